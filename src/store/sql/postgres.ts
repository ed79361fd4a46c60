/**
 * SqlDatabase on a PostgreSQL server through pg.Pool. Queries run on any pooled connection; a transaction
 * runs on one dedicated client from BEGIN to COMMIT/ROLLBACK. int8 comes back as a decimal string (pg's
 * default).
 *
 * Statements that repeat run as named prepared statements (see PreparedStatements below).
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { SqlDatabase, SqlExecutor, SqlResult } from '../sql.ts';

export interface PostgresOptions {
  readonly url: string;
  /** Pool size. Default 10. */
  readonly max?: number;
  /** How long an unused pooled connection stays open. Default 10 s (pg's). */
  readonly idleTimeoutMs?: number;
  /** Connections kept open however long unused (the idle timeout closes only those above). Default 0. */
  readonly minConnections?: number;
  readonly applicationName?: string;
  /**
   * DATABASE_PREPARED_STATEMENTS: run repeated statements as named prepared statements. Default true; turn
   * off behind a pooler that cannot keep them (PgBouncer in transaction mode before 1.21, or with
   * max_prepared_statements = 0).
   */
  readonly preparedStatements?: boolean;
}

/**
 * Which statement texts run prepared. Parsing and planning cost the server more than executing the hot
 * path's statements (measured on the event log's read: 187 µs of server CPU unnamed, 43 µs prepared; the
 * append 210 → 140 µs), and every inbound message runs several. node-postgres prepares a named statement
 * once per connection and then sends only Bind/Execute.
 *
 * A text is prepared from its second use, so one-off statements (migrations, texts built around a
 * variable number of values) do not pile up on the server's connections, and at most `maxTexts` texts
 * are ever prepared per process (each costs memory on every pooled connection); later ones run unnamed.
 * Names are a hash of the text: node-postgres refuses one name for two texts.
 */
export class PreparedStatements {
  private readonly seen = new Map<string, string | undefined>();
  private prepared = 0;

  constructor(private readonly maxTexts = 256) {}

  /** The statement name for this text, or undefined to run it unnamed. */
  nameFor(text: string): string | undefined {
    if (this.seen.has(text)) {
      let name = this.seen.get(text);
      if (name === undefined && this.prepared < this.maxTexts) {
        name = `zw_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
        this.seen.set(text, name);
        this.prepared += 1;
      }
      return name;
    }
    // Texts seen once are only remembered up to a bound, so unique texts cannot grow this map forever.
    if (this.seen.size < this.maxTexts * 16) this.seen.set(text, undefined);
    return undefined;
  }
}

export interface PostgresDatabase extends SqlDatabase {
  readonly dialect: 'postgres';
  readonly pool: pg.Pool;
}

type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

async function run<Row>(
  target: Queryable,
  text: string,
  params: readonly unknown[] | undefined,
  prepared: PreparedStatements | undefined,
): Promise<SqlResult<Row>> {
  // Without parameters node-postgres uses the simple protocol (several statements allowed): not prepared.
  const name = params && prepared ? prepared.nameFor(text) : undefined;
  const result = name
    ? await target.query({ name, text, values: [...params!] })
    : await target.query(text, params ? [...params] : undefined);
  return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
}

/** Opens a pool and checks that the server answers (throws when it cannot be reached). */
export async function openPostgres(options: PostgresOptions): Promise<PostgresDatabase> {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max ?? 10,
    idleTimeoutMillis: options.idleTimeoutMs ?? 10_000,
    min: options.minConnections ?? 0,
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
  const prepared = options.preparedStatements === false ? undefined : new PreparedStatements();

  return {
    dialect: 'postgres',
    pool,
    query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      return run<Row>(pool, text, params, prepared);
    },
    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      // The pool listens for errors of idle clients only: a connection that dies during the transaction
      // would emit 'error' with no listener, an uncaught exception. The failed query rejects anyway; the
      // client is destroyed instead of pooled.
      const onError = (error: Error): void => {
        broken = error;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await fn({
          query: <Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) =>
            run<Row>(client, text, params, prepared),
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
        client.removeListener('error', onError);
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
