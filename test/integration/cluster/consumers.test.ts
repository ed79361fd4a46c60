/**
 * Consumers once in a cluster: every node runs every projection (each needs its own read-your-writes), and
 * the checkpoint's compare-and-set makes each batch land once, with the checkpoint never moving backwards.
 * Sinks run as leased store subscriptions (one consumer at a time, owner-conditioned advance): the contract
 * suite covers those; here two nodes' subscriptions of one name share the work without overlap.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectionRunner } from '../../../projections/runner.ts';
import type { Projection } from '../../../projections/projection.ts';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { createSqlEventStore } from '../../../src/store/sql-event-store.ts';
import type { RecordedEvent } from '../../../src/store/port.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';
import { eventually } from '../../support/zapwire.ts';

let pg: TestPostgres;

beforeAll(async () => {
  pg = await openTestPostgres({ migrations: MIGRATION_DIRECTORIES });
  await pg.db.exec(`
    CREATE TABLE t_applied (event_id text NOT NULL, node text NOT NULL);
    CREATE TABLE t_checkpoint_regressions (projection text, old text, new text);
    CREATE FUNCTION t_no_regression() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.subscription_id LIKE 'projection:%' AND NEW.checkpoint COLLATE "C" < OLD.checkpoint COLLATE "C" THEN
        INSERT INTO t_checkpoint_regressions VALUES (NEW.subscription_id, OLD.checkpoint, NEW.checkpoint);
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER t_no_regression BEFORE UPDATE ON es_subscriptions
      FOR EACH ROW EXECUTE FUNCTION t_no_regression();
  `);
});
afterAll(async () => {
  await pg.close();
});

function counting(node: string): Projection {
  return {
    name: 'cluster-test',
    filter: { streamPrefixes: ['ct-'] },
    tables: ['t_applied'],
    async apply(tx, event: RecordedEvent) {
      await tx.query('INSERT INTO t_applied (event_id, node) VALUES ($1, $2)', [event.id, node]);
    },
  };
}

describe('projections on several nodes', () => {
  it('apply each event once in the cluster and never move a checkpoint backwards', async () => {
    const logger = pino({ level: 'silent' });
    const stores = [createSqlEventStore(pg.db), createSqlEventStore(pg.db), createSqlEventStore(pg.db)];
    const runners = stores.map(
      (store, i) => new ProjectionRunner(store, pg.db, [counting(`node-${i}`)], logger, 20),
    );
    await Promise.all(runners.map((runner) => runner.start()));
    // Appends come from another process (a store of their own), so no runner is woken first: all three
    // find the batches by polling, and race for them.
    const writer = createSqlEventStore(pg.db);
    let total = 0;
    let last: RecordedEvent['position'] | undefined;
    const applied = async () =>
      (
        await pg.db.query<{ events: number; rows: number; nodes: number }>(
          `SELECT count(DISTINCT event_id)::int AS events, count(*)::int AS rows, count(DISTINCT node)::int AS nodes
             FROM t_applied`,
        )
      ).rows[0]!;
    // Rounds of appends until more than one node has won a batch: on a loaded machine one node can win
    // every race of a short round, and a test whose nodes never raced would prove nothing about racing.
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 300; i += 10) {
        const batch = Array.from({ length: 10 }, (_, k) => ({ type: 'Tick', data: { n: total + i + k } }));
        last = (await writer.append(`ct-${(total + i) % 7}`, batch)).position;
        if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      total += 300;
      // Read-your-writes works on every node, not only the one that applied the batch.
      for (const runner of runners) expect(await runner.waitFor(last!, 20_000)).toBe(true);
      if ((await applied()).nodes > 1) break;
    }
    const counts = await applied();
    expect(counts).toMatchObject({ events: total, rows: total });
    expect(counts.nodes).toBeGreaterThan(1);
    await Promise.all(runners.map((runner) => runner.stop()));
    const regressions = await pg.db.query('SELECT * FROM t_checkpoint_regressions');
    expect(regressions.rows).toEqual([]);
    await Promise.all([...stores, writer].map((store) => store.close()));
  }, 60_000);

  it('a sink subscription runs on one node at a time and the next takes over from its checkpoint', async () => {
    const a = createSqlEventStore(pg.db, { ownerId: 'node-a' });
    const b = createSqlEventStore(pg.db, { ownerId: 'node-b' });
    const seen: { node: string; id: string }[] = [];
    const handler = (node: string) => async (events: readonly RecordedEvent[]) => {
      for (const event of events) seen.push({ node, id: event.id });
    };
    const options = { filter: { streamPrefixes: ['sk-'] }, pollIntervalMs: 20, leaseMs: 600 };
    const onA = a.subscribe('sink-cluster-test', options, handler('a'));
    await onA.caughtUp;
    const onB = b.subscribe('sink-cluster-test', options, handler('b'));
    for (let i = 0; i < 20; i++) await a.append('sk-1', [{ type: 'E', data: { i } }]);
    await eventually(() => seen.length === 20, 10_000);
    expect(new Set(seen.map((s) => s.node))).toEqual(new Set(['a']));
    // The first node goes away: the second takes over from the stored checkpoint, nothing twice.
    await onA.stop();
    for (let i = 20; i < 40; i++) await b.append('sk-1', [{ type: 'E', data: { i } }]);
    await eventually(() => seen.length >= 40, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen.length).toBe(40);
    expect(new Set(seen.map((s) => s.id)).size).toBe(40);
    expect(seen.slice(20).every((s) => s.node === 'b')).toBe(true);
    await onB.stop();
    await a.close();
    await b.close();
  });
});
