/**
 * The SQL port: what the read model, projections and the PostgreSQL-family event stores need from a
 * database. Two adapters: PGlite (embedded, in-process; src/store/sql/pglite.ts) and node-postgres (pg.Pool;
 * src/store/sql/postgres.ts). Parameters use $1..$n; int8 columns must be cast to text or int in SQL so both
 * adapters agree (both return uncast int8 as a decimal string; see src/store/sql/int8.ts).
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
  /**
   * Runs fn in one transaction; commits when it resolves, rolls back when it throws. Use only `tx` inside:
   * on PGlite (one session) the transaction is exclusive, other queries wait until it ends, and a call on
   * the database itself from inside fn throws rather than deadlock.
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
