/**
 * The SQL port: what the read model, projections and the PostgreSQL-family event stores need from a
 * database, on node-postgres (src/store/sql/postgres.ts) against the embedded or an external PostgreSQL.
 * Parameters use $1..$n; int8 columns are cast to text or int in SQL (see src/store/sql/int8.ts).
 */
export interface SqlResult<Row> {
  readonly rows: Row[];
  readonly rowCount: number;
}

export interface SqlExecutor {
  query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<SqlResult<Row>>;
}

export interface SqlDatabase extends SqlExecutor {
  readonly dialect: 'postgres';
  /**
   * Runs fn in one transaction on one connection; commits when it resolves, rolls back when it throws.
   * Use only `tx` inside: a query on the database itself runs on another connection, outside the
   * transaction.
   */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Runs a multi-statement script (migrations). */
  exec(script: string): Promise<void>;
  /**
   * Optional: LISTEN on a channel (a dedicated connection on PostgreSQL). Resolves to a function that stops
   * listening. Used only as an extra wake-up for several processes on one PostgreSQL.
   */
  listen?(channel: string, onNotification: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
