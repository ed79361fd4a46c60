/**
 * A fresh PostgreSQL database per test file: `zw_test_<random>` on the server of TEST_DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres), dropped again by `drop()`. When the server cannot
 * be reached, `createTestDatabase` throws, so the tests that need it fail instead of being skipped.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { openPostgres, type PostgresDatabase } from '../../src/store/sql/postgres.ts';
import { EVENT_STORE_TABLES } from './pglite.ts';

export const TEST_SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_SERVER_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`PostgreSQL is not reachable at ${TEST_SERVER_URL} (set TEST_DATABASE_URL): ${message}`, {
      cause: error,
    });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `zw_test_${randomBytes(6).toString('hex')}`;
  await admin((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(TEST_SERVER_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () =>
      admin(async (client) => void (await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))),
  };
}

export interface TestPostgres {
  readonly database: TestDatabase;
  readonly db: PostgresDatabase;
  truncate(extraTables?: readonly string[]): Promise<void>;
  /** Closes the pool and drops the database. */
  close(): Promise<void>;
}

/** A fresh database with the event store's migrations (plus `migrations`) applied, and a pool on it. */
export async function openTestPostgres(
  options: { migrations?: readonly string[]; max?: number } = {},
): Promise<TestPostgres> {
  const database = await createTestDatabase();
  let db: PostgresDatabase | undefined;
  try {
    db = await openPostgres({ url: database.url, max: options.max ?? 10 });
    await migrate(db, [STORE_MIGRATIONS_DIR, ...(options.migrations ?? [])]);
  } catch (error) {
    await db?.close().catch(() => undefined);
    await database.drop().catch(() => undefined);
    throw error;
  }
  const opened = db;
  return {
    database,
    db: opened,
    async truncate(extraTables = []) {
      await opened.exec(`TRUNCATE ${[...EVENT_STORE_TABLES, ...extraTables].join(', ')} RESTART IDENTITY`);
    },
    async close() {
      await opened.close().catch(() => undefined);
      await database.drop();
    },
  };
}
