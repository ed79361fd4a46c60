/**
 * SqlDatabase on a PostgreSQL server through pg.Pool. Queries run on any pooled connection; a transaction
 * runs on one dedicated client from BEGIN to COMMIT/ROLLBACK. int8 comes back as a decimal string (pg's
 * default).
 */
import pg from 'pg';
import type { SqlDatabase, SqlExecutor, SqlResult } from '../sql.ts';

export interface PostgresOptions {
  readonly url: string;
  /** Pool size. Default 10. */
  readonly max?: number;
  /** How long an unused pooled connection stays open. Default 10 s (pg's). */
  readonly idleTimeoutMs?: number;
  readonly applicationName?: string;
}

export interface PostgresDatabase extends SqlDatabase {
  readonly dialect: 'postgres';
  readonly pool: pg.Pool;
}

type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

async function run<Row>(
  target: Queryable,
  text: string,
  params?: readonly unknown[],
): Promise<SqlResult<Row>> {
  const result = await target.query(text, params ? [...params] : undefined);
  return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
}

/** Opens a pool and checks that the server answers (throws when it cannot be reached). */
export async function openPostgres(options: PostgresOptions): Promise<PostgresDatabase> {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    idleTimeoutMillis: options.idleTimeoutMs ?? 10_000,
    application_name: options.applicationName ?? 'zapwire',
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that would
  // crash the process. The next query gets a fresh connection.
  pool.on('error', () => undefined);
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
  const listeners = new Set<pg.Client>();

  return {
    dialect: 'postgres',
    pool,
    query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      return run<Row>(pool, text, params);
    },
    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn({
          query: <Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) =>
            run<Row>(client, text, params),
        });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          // The connection is unusable (e.g. it died mid-transaction): destroy it instead of pooling it.
          broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        }
        throw error;
      } finally {
        client.release(broken);
      }
    },
    async exec(script: string): Promise<void> {
      // No parameters: pg uses the simple query protocol, which accepts several statements.
      await pool.query(script);
    },
    async listen(channel: string, onNotification: (payload: string) => void): Promise<() => Promise<void>> {
      const client = new pg.Client({ connectionString: options.url, application_name: 'zapwire-listen' });
      client.on('error', () => undefined);
      await client.connect();
      client.on('notification', (message) => {
        if (message.channel === channel) onNotification(message.payload ?? '');
      });
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      listeners.add(client);
      return async () => {
        if (!listeners.delete(client)) return;
        await client.end().catch(() => undefined);
      };
    },
    async close(): Promise<void> {
      await Promise.all([...listeners].map((client) => client.end().catch(() => undefined)));
      listeners.clear();
      await pool.end();
    },
  };
}
