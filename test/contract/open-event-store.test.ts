/** openEventStore: adapter selection from the configuration, and migrations over several directories. */
import { chmodSync, existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEventStore } from '../../src/store/index.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';
import { listMigrations } from '../../src/store/migrate.ts';
import { createTestDatabase, type TestDatabase } from '../support/postgres.ts';

describe('openEventStore', () => {
  let work: string;
  let extra: string;
  let database: TestDatabase;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'zw-open-'));
    // As root, the embedded PostgreSQL runs as its own user, which must be able to pass through.
    chmodSync(work, 0o711);
    extra = join(work, 'migrations');
    mkdirSync(extra);
    writeFileSync(join(extra, '9001_extra.sql'), 'CREATE TABLE zw_extra (id int PRIMARY KEY);');
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
    // As root its cluster may live outside (/var/lib/zapwire-pg): removed with it.
    removeEmbeddedPostgres(join(work, 'data', 'postgres'));
    rmSync(work, { recursive: true, force: true });
  });

  it('without URLs: the embedded PostgreSQL under <dataDir>/postgres, durable across reopen, extra migrations applied once', async () => {
    const dataDir = join(work, 'data');
    const first = await openEventStore({ dataDir, migrations: [extra] });
    expect(first.store.kind).toBe('embedded-postgres');
    expect(first.embedded).toBe(true);
    expect(existsSync(join(dataDir, 'postgres', 'cluster', 'PG_VERSION'))).toBe(true);
    const appended = await first.store.append('durable-1', [{ type: 'Kept', data: { n: 1 } }]);
    await first.db.query('INSERT INTO zw_extra VALUES (1)');
    await first.store.close();
    await first.db.close();
    const second = await openEventStore({ dataDir, migrations: [extra] });
    try {
      expect((await second.store.readStream('durable-1')).map((e) => e.id)).toEqual([appended.events[0]!.id]);
      const { rows } = await second.db.query<{ name: string }>(
        'SELECT name FROM schema_migrations ORDER BY name',
      );
      expect(rows.map((r) => r.name)).toEqual([
        '0001_event_store.sql',
        '0002_es_append_stream_order.sql',
        '0003_dead_letters.sql',
        '9001_extra.sql',
      ]);
      expect((await second.db.query('SELECT id FROM zw_extra')).rows).toEqual([{ id: 1 }]);
    } finally {
      await second.store.close();
      await second.db.close();
    }
  });

  it('a DATA_DIR holding the former PGlite store is not started over: it names the migration command', async () => {
    const dataDir = join(work, 'legacy');
    mkdirSync(join(dataDir, 'pglite'), { recursive: true });
    writeFileSync(join(dataDir, 'pglite', 'PG_VERSION'), '17\n');
    await expect(openEventStore({ dataDir })).rejects.toThrow(/npm run migrate-from-pglite/);
    expect(existsSync(join(dataDir, 'postgres'))).toBe(false);
  });

  it('with DATABASE_URL: PostgreSQL for events and read model', async () => {
    const { store, db } = await openEventStore({
      dataDir: work,
      databaseUrl: database.url,
      migrations: [extra],
    });
    try {
      expect(store.kind).toBe('postgres');
      expect(db.dialect).toBe('postgres');
      await store.ping();
      expect((await db.query('SELECT to_regclass($1)::text AS t', ['zw_extra'])).rows).toEqual([
        { t: 'zw_extra' },
      ]);
    } finally {
      await store.close();
      await db.close();
    }
  });

  it('with EVENTSTORE_URL: KurrentDB for events, the read model on DATABASE_URL', async () => {
    const { store, log, consumers, db } = await openEventStore({
      dataDir: work,
      databaseUrl: database.url,
      eventStoreUrl: 'kurrentdb://127.0.0.1:1?tls=false',
    });
    try {
      expect(store.kind).toBe('kurrentdb');
      expect(log.kind).toBe('kurrentdb');
      expect(db.dialect).toBe('postgres');
      // Nothing listens on port 1: the store reports it instead of pretending.
      await expect(store.ping()).rejects.toThrow();
      await expect(log.ping()).rejects.toThrow();
      // Subscription state lives in the read model, so it works without the server.
      expect(await store.readCheckpoint('anything')).toBe('');
      expect(await consumers.readCheckpoint('anything')).toBe('');
      // The log is storage only: consumer management is not on it.
      expect('subscribe' in log).toBe(false);
    } finally {
      await store.close();
      await db.close();
    }
  }, 30_000);

  it('rejects two migrations with one name in different directories', () => {
    const other = join(work, 'other');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, '9001_extra.sql'), 'SELECT 1;');
    expect(() => listMigrations([extra, other])).toThrow(/two migrations are named 9001_extra.sql/);
  });
});
