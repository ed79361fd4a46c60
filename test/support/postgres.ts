/**
 * A fresh PostgreSQL database per test file: `zw_test_<random>` on the server of TEST_DATABASE_URL, dropped
 * again by `drop()`. test/support/global-setup.ts sets TEST_DATABASE_URL to the embedded PostgreSQL it
 * starts for the run, unless it was set already. When the server cannot be reached, `createTestDatabase`
 * throws, so the tests that need it fail instead of being skipped.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { openPostgres, type PostgresDatabase } from '../../src/store/sql/postgres.ts';

/** The event store's tables, emptied by `truncate` (read-model tables are the caller's to list). */
export const EVENT_STORE_TABLES = ['es_events', 'es_streams', 'es_subscriptions', 'es_dead_letters'] as const;

export const TEST_SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** A PostgreSQL run by the machine, not by zapwire: the external-database case, on the standard port. */
export const EXTERNAL_SERVER_URL =
  process.env.EXTERNAL_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

async function admin<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`PostgreSQL is not reachable at ${serverUrl.replace(/:[^:@/]*@/, ':***@')}: ${message}`, {
      cause: error,
    });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function createTestDatabase(serverUrl: string = TEST_SERVER_URL): Promise<TestDatabase> {
  const name = `zw_test_${randomBytes(6).toString('hex')}`;
  await admin(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () =>
      admin(
        serverUrl,
        async (client) => void (await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)),
      ),
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
  options: { migrations?: readonly string[]; max?: number; serverUrl?: string } = {},
): Promise<TestPostgres> {
  const database = await createTestDatabase(options.serverUrl);
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

/**
 * The test database that belongs to an app's data directory: created on first use and remembered in a file
 * inside it, so an app restarted on the same directory (or a second app given it) finds its data again, as
 * it would in the embedded PostgreSQL under DATA_DIR.
 */
export async function databaseUrlForDataDir(dataDir: string): Promise<string> {
  const file = join(dataDir, 'test-database-url');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const database = await createTestDatabase();
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${database.url}\n`, { mode: 0o600 });
  return database.url;
}

/** Drops the database remembered in a data directory, if any. */
export async function dropDatabaseOfDataDir(dataDir: string): Promise<void> {
  const file = join(dataDir, 'test-database-url');
  if (!existsSync(file)) return;
  const url = new URL(readFileSync(file, 'utf8').trim());
  const name = url.pathname.slice(1);
  url.pathname = '/postgres';
  await admin(
    url.toString(),
    async (client) =>
      void (await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)),
  );
}
