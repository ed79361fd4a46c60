/**
 * The SQL port: what the read model, projections and the PostgreSQL-family event stores need from a
 * database. Two adapters: PGlite (embedded, in-process) and node-postgres (pg.Pool).
 * Parameters use $1..$n; int8 columns must be cast to text or int in SQL so both adapters agree.
 */
export interface SqlResult<Row> {
  readonly rows: Row[];
  readonly rowCount: number;
}

export interface SqlExecutor {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<SqlResult<Row>>;
}

export interface SqlDatabase extends SqlExecutor {
  readonly dialect: 'pglite' | 'postgres';
  /** Runs fn in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Runs a multi-statement script (migrations). */
  exec(script: string): Promise<void>;
  close(): Promise<void>;
}
