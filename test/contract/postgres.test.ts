import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventStoreContract } from './event-store.contract.ts';
import { runAndKillWriter, verifyAfterCrash } from './crash.ts';
import {
  createTestDatabase,
  EXTERNAL_SERVER_URL,
  openTestPostgres,
  TEST_SERVER_URL,
  type TestPostgres,
} from '../support/postgres.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { openPostgres } from '../../src/store/sql/postgres.ts';
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { START, type Checkpoint, type RecordedEvent } from '../../src/store/port.ts';

// Once on the test run's server (the embedded PostgreSQL), once on the machine's own PostgreSQL (another
// major version, default settings): the external-database case.
for (const [name, serverUrl] of [
  ['postgres (embedded server)', TEST_SERVER_URL],
  ['postgres (external server)', EXTERNAL_SERVER_URL],
] as const) {
  eventStoreContract({
    name,
    checkpointPattern: /^\d{20}:\d{20}$/,
    uniqueEventIds: true,
    propertyRuns: 15,
    async open() {
      const pg = await openTestPostgres({ serverUrl });
      const store = createSqlEventStore(pg.db);
      return {
        store,
        reset: () => pg.truncate(),
        async close() {
          await store.close();
          await pg.close();
        },
      };
    },
  });
}

describe('PostgreSQL adapter', () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await openTestPostgres();
  });
  afterAll(async () => {
    await pg?.close();
  });

  it('gap-safe: an event committed after an earlier-started, still-open append stays invisible until that one commits', async () => {
    await pg.truncate();
    const store = createSqlEventStore(pg.db);
    const seen: RecordedEvent[] = [];
    let fastPosition: Checkpoint = START;
    const sub = store.subscribe('gap', { pollIntervalMs: 20 }, async (events) => {
      seen.push(...events);
    });
    try {
      await sub.caughtUp;
      const slow = await pg.db.pool.connect();
      try {
        await slow.query('BEGIN');
        // Takes a transaction id and a global position first...
        const { rows } = await slow.query<{ global_position: string }>(
          `SELECT global_position::text FROM es_append('gap-slow', 'gap', NULL, $1::jsonb)`,
          [JSON.stringify([{ id: crypto.randomUUID(), type: 'Slow', data: {} }])],
        );
        // ...then a later append takes a higher position and commits first.
        const fast = await store.append('gap-fast', [{ type: 'Fast', data: {} }]);
        fastPosition = fast.position;
        expect(BigInt(fast.position.split(':')[1]!)).toBeGreaterThan(BigInt(rows[0]!.global_position));
        // A naive `global_position > last` reader would now return Fast and later skip Slow.
        const naive = await pg.db.query<{ event_type: string }>(
          `SELECT event_type FROM es_events ORDER BY global_position`,
        );
        expect(naive.rows.map((r) => r.event_type)).toEqual(['Fast']);
        // The gap-safe read holds Fast back while Slow's transaction can still commit before it.
        const page = await store.readAll();
        expect(page.events).toEqual([]);
        expect(await store.headPosition()).toBe('');
        await new Promise((resolve) => setTimeout(resolve, 150));
        expect(seen).toEqual([]);
        await slow.query('COMMIT');
      } finally {
        slow.release();
      }
      expect(await sub.waitFor(fastPosition)).toBe(true);
      expect(seen.map((e) => e.type)).toEqual(['Slow', 'Fast']);
      const all = await store.readAll();
      expect(all.events.map((e) => e.type)).toEqual(['Slow', 'Fast']);
    } finally {
      await sub.stop();
      await store.close();
    }
  });

  it('migrations: two processes starting at once apply each file exactly once', async () => {
    const database = await createTestDatabase();
    const a = await openPostgres({ url: database.url, max: 2 });
    const b = await openPostgres({ url: database.url, max: 2 });
    try {
      const [ra, rb] = await Promise.all([
        migrate(a, [STORE_MIGRATIONS_DIR]),
        migrate(b, [STORE_MIGRATIONS_DIR]),
      ]);
      expect([...ra.applied, ...rb.applied]).toContain('0001_event_store.sql');
      const { rows } = await a.query<{ name: string; n: string }>(
        'SELECT name, count(*)::text AS n FROM schema_migrations GROUP BY name ORDER BY name',
      );
      expect(rows).toEqual([
        { name: '0001_event_store.sql', n: '1' },
        { name: '0002_es_append_stream_order.sql', n: '1' },
        { name: '0003_dead_letters.sql', n: '1' },
      ]);
      expect((await migrate(a, [STORE_MIGRATIONS_DIR])).applied).toEqual([]);
      const { rows: fns } = await a.query(`SELECT 1 FROM pg_proc WHERE proname = 'es_append'`);
      expect(fns).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
      await database.drop();
    }
  });

  it('notify: a subscriber in another process (another pool) is woken by NOTIFY, not by its poll', async () => {
    await pg.truncate();
    const other = await openPostgres({ url: pg.database.url, max: 2 });
    const writer = createSqlEventStore(pg.db, { notify: true });
    const reader = createSqlEventStore(other, { notify: true });
    try {
      const seen: string[] = [];
      const sub = reader.subscribe('notified', { pollIntervalMs: 30_000 }, async (events) => {
        seen.push(...events.map((e) => e.type));
      });
      await sub.caughtUp;
      // LISTEN is set up in the background when the store is created; give it a moment.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const result = await writer.append('n-1', [{ type: 'Ping', data: {} }]);
      expect(await sub.waitFor(result.position, 5_000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(seen).toEqual(['Ping']);
    } finally {
      await reader.close();
      await writer.close();
      await other.close();
    }
  });

  it('rolls back a failed transaction and keeps the pool usable', async () => {
    await expect(
      pg.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO es_subscriptions (subscription_id) VALUES ('rolled-back')`);
        await tx.query('SELECT 1/0');
      }),
    ).rejects.toThrow(/division by zero/);
    expect(
      (await pg.db.query(`SELECT 1 FROM es_subscriptions WHERE subscription_id = 'rolled-back'`)).rows,
    ).toEqual([]);
    expect((await pg.db.query('SELECT 1::int8 AS n')).rows).toEqual([{ n: '1' }]);
  });

  it('fails clearly when the server cannot be reached', async () => {
    await expect(openPostgres({ url: 'postgres://postgres@127.0.0.1:1/none' })).rejects.toThrow();
  });

  it('crash: a writer killed with SIGKILL mid-appends loses no acknowledged event; streams stay contiguous', async () => {
    await pg.truncate();
    const acks = await runAndKillWriter('postgres', pg.database.url, 400);
    // The killed backends' transactions are rolled back by the server.
    const { stored, acked } = await verifyAfterCrash(createSqlEventStore(pg.db), acks);
    expect(acked).toBeGreaterThanOrEqual(400);
    expect(stored).toBeGreaterThanOrEqual(acked);
  });
});
