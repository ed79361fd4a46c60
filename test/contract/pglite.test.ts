import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { eventStoreContract } from './event-store.contract.ts';
import { runAndKillWriter, verifyAfterCrash } from './crash.ts';
import { openTestPglite, type TestPglite } from '../support/pglite.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { openPglite } from '../../src/store/sql/pglite.ts';
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';

// One PGlite for the whole file (a cold create costs ~4 s); tables are truncated between tests.
let shared: Promise<TestPglite> | undefined;
const database = (): Promise<TestPglite> => (shared ??= openTestPglite());
afterAll(async () => {
  await (await shared)?.close();
});

eventStoreContract({
  name: 'pglite',
  checkpointPattern: /^\d{20}:\d{20}$/,
  uniqueEventIds: true,
  async open() {
    const pglite = await database();
    const store = createSqlEventStore(pglite.db);
    return { store, reset: () => pglite.truncate(), close: () => store.close() };
  },
});

describe('PGlite adapter', () => {
  let pglite: TestPglite;
  beforeEach(async () => {
    pglite = await database();
    await pglite.truncate();
  });

  it('makes transaction() exclusive: a query from outside waits for COMMIT and never sees uncommitted rows', async () => {
    const { db } = pglite;
    const store = createSqlEventStore(db);
    const order: string[] = [];
    let inside!: () => void;
    const started = new Promise<void>((resolve) => (inside = resolve));
    const transaction = db.transaction(async (tx) => {
      await tx.query(`SELECT * FROM es_append('tx-1', 'tx', NULL, $1::jsonb)`, [
        JSON.stringify([{ id: crypto.randomUUID(), type: 'T', data: {} }]),
      ]);
      inside();
      await new Promise((resolve) => setTimeout(resolve, 150));
      order.push('commit');
    });
    await started;
    const outside = db.query<{ n: string }>('SELECT count(*)::text AS n FROM es_events').then(({ rows }) => {
      order.push(`outside saw ${rows[0]!.n}`);
    });
    const read = store.readAll().then((page) => order.push(`readAll saw ${page.events.length}`));
    await Promise.all([transaction, outside, read]);
    expect(order).toEqual(['commit', 'outside saw 1', 'readAll saw 1']);
  });

  it('rolls a failed transaction back, and a query on the database inside its own transaction throws instead of deadlocking', async () => {
    const { db } = pglite;
    await expect(
      db.transaction(async (tx) => {
        await tx.query(`INSERT INTO es_subscriptions (subscription_id) VALUES ('rolled-back')`);
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    expect(
      (await db.query(`SELECT 1 FROM es_subscriptions WHERE subscription_id = 'rolled-back'`)).rows,
    ).toEqual([]);
    await expect(db.transaction(async () => db.query('SELECT 1'))).rejects.toThrow(/one session/);
    // and the database is usable afterwards
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('returns int8 as text, like node-postgres, and counts rows for SELECT and UPDATE', async () => {
    const { db } = pglite;
    const { rows, rowCount } = await db.query('SELECT 1::int8 AS small, 9007199254740993::int8 AS big');
    expect(rows).toEqual([{ small: '1', big: '9007199254740993' }]);
    expect(rowCount).toBe(1);
    await db.query(`INSERT INTO es_subscriptions (subscription_id) VALUES ('a'), ('b')`);
    expect((await db.query(`UPDATE es_subscriptions SET status = 'x'`)).rowCount).toBe(2);
  });

  it('measured: on one session the snapshot xmin passes every committed transaction, so nothing is held back', async () => {
    const { db } = pglite;
    const store = createSqlEventStore(db);
    for (let i = 0; i < 20; i++) {
      const result = await store.append(`xmin-${i % 3}`, [{ type: 'X', data: { i } }]);
      const { rows } = await db.query<{ xmin: string; newest: string; snapshot: string }>(
        `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, max(transaction_id)::text AS newest,
                pg_current_snapshot()::text AS snapshot FROM es_events`,
      );
      const { xmin, newest, snapshot } = rows[0]!;
      expect(BigInt(xmin)).toBeGreaterThan(BigInt(newest));
      // No transaction in progress: the snapshot is "xmin:xmax:" with an empty in-progress list.
      expect(snapshot).toBe(`${xmin}:${xmin}:`);
      expect(await store.headPosition()).toBe(result.position);
    }
    // Inside a transaction that wrote, its own rows are not yet below xmin: the rule hides them, as it must.
    const hidden = await db.transaction(async (tx) => {
      await tx.query(`SELECT * FROM es_append('xmin-tx', 'xmin', NULL, $1::jsonb)`, [
        JSON.stringify([{ id: crypto.randomUUID(), type: 'X', data: {} }]),
      ]);
      const { rows } = await tx.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM es_events
          WHERE stream_id = 'xmin-tx' AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())`,
      );
      return rows[0]!.n;
    });
    expect(hidden).toBe('0');
    expect((await store.readStream('xmin-tx')).length).toBe(1);
    expect((await store.readAll({ filter: { streamPrefixes: ['xmin-tx'] } })).events).toHaveLength(1);
  });

  it('migrates once: a second run applies nothing and schema_migrations lists the files', async () => {
    const { db } = pglite;
    expect((await migrate(db, [STORE_MIGRATIONS_DIR])).applied).toEqual([]);
    const { rows } = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY name');
    expect(rows.map((r) => r.name)).toContain('0001_event_store.sql');
  });

  it('crash: a writer killed with SIGKILL mid-appends loses no acknowledged event; streams stay contiguous', async () => {
    const work = mkdtempSync(join(tmpdir(), 'zw-crash-pglite-'));
    const dir = join(work, 'data');
    try {
      // Seed the child's directory from this file's migrated database: skips the child's 4–5 s initdb.
      const seed = join(work, 'seed.tar');
      writeFileSync(seed, Buffer.from(await (await pglite.db.pglite.dumpDataDir('none')).arrayBuffer()));
      const acks = await runAndKillWriter('pglite', dir, 300, seed);
      const db = await openPglite({ dataDir: dir });
      try {
        await migrate(db, [STORE_MIGRATIONS_DIR]);
        const { stored, acked } = await verifyAfterCrash(createSqlEventStore(db), acks);
        expect(acked).toBeGreaterThanOrEqual(300);
        expect(stored).toBeGreaterThanOrEqual(acked);
      } finally {
        await db.close();
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
