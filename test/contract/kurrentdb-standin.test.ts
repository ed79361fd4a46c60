/**
 * The KurrentDB stand-in (test/support/kurrentdb-standin) through the real @kurrent/kurrentdb-client:
 * - the server behaviour the adapter relies on, checked on the client's own API (expected states and the
 *   errors they map to, on both append paths; reads and filters; subscriptions; soft delete, tombstone;
 *   deadlines), so a change to the stand-in that drifts from a server fails here;
 * - SIGKILL and restart: the stand-in as a child process persisting to a file is killed mid-stream and
 *   started again; the adapter's client reconnects, retried appends are not stored twice, and a
 *   subscription resumes from its checkpoint with no gap and no repeat.
 * The contract suite itself runs against the stand-in in kurrentdb.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BACKWARDS,
  END,
  KurrentDBClient,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  eventTypeFilter,
  excludeSystemEvents,
  jsonEvent,
  streamNameFilter,
  type AllStreamResolvedEvent,
  type Filter,
  type Position,
  type ResolvedEvent,
} from '@kurrent/kurrentdb-client';
import { startKurrentStandIn, type KurrentStandIn } from '../support/kurrentdb-standin/server.ts';
import { StandInLog } from '../support/kurrentdb-standin/log.ts';
import { spawnStandIn, type StandInProcess } from '../support/kurrentdb-standin/process.ts';
import { openTestPostgres, type TestPostgres } from '../support/postgres.ts';
import { openKurrentEventStore } from '../../src/store/kurrentdb.ts';
import type { EventStore, RecordedEvent } from '../../src/store/port.ts';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const name = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;
const event = (type: string, data: Record<string, unknown> = {}) => jsonEvent({ type, data });

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function errorOf(promise: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Record<string, unknown>;
  }
  throw new Error('expected the call to fail');
}

for (const appendPath of ['batchAppend', 'append'] as const) {
  describe(`stand-in through the real client: appends (${appendPath})`, () => {
    let standIn: KurrentStandIn;
    let client: KurrentDBClient;
    beforeAll(async () => {
      standIn = await startKurrentStandIn({ withoutBatchAppend: appendPath === 'append' });
      client = KurrentDBClient.connectionString(standIn.url);
    });
    afterAll(async () => {
      await client?.dispose();
      await standIn?.stop();
    });

    it('checks every expected state and maps a conflict to WrongExpectedVersionError with both states', async () => {
      const stream = name('exp');
      const first = await client.appendToStream(stream, [event('A'), event('B')], { streamState: NO_STREAM });
      expect(first.nextExpectedRevision).toBe(1n);
      expect(first.position!.commit).toBeLessThanOrEqual(first.position!.prepare);
      await client.appendToStream(stream, event('C'), { streamState: 1n });
      await client.appendToStream(stream, event('D'), { streamState: STREAM_EXISTS });
      const stale = await errorOf(client.appendToStream(stream, event('E'), { streamState: 1n }));
      expect(stale).toMatchObject({
        type: 'wrong-expected-version',
        streamName: stream,
        expectedState: 1n,
        actualState: 3n,
      });
      const exists = await errorOf(client.appendToStream(stream, event('E'), { streamState: NO_STREAM }));
      expect(exists).toMatchObject({ expectedState: NO_STREAM, actualState: 3n });
      const missing = await errorOf(
        client.appendToStream(name('none'), event('E'), { streamState: STREAM_EXISTS }),
      );
      expect(missing).toMatchObject({ type: 'wrong-expected-version', actualState: NO_STREAM });
      expect(standIn.calls[appendPath]).toBeGreaterThan(0);
      expect(standIn.calls[appendPath === 'append' ? 'batchAppend' : 'append']).toBeUndefined();
    });

    it('a retry with the same ids at the same expected state is acknowledged without writing twice', async () => {
      const stream = name('idem');
      const events = [event('A'), event('B')];
      const first = await client.appendToStream(stream, events, { streamState: NO_STREAM });
      const again = await client.appendToStream(stream, events, { streamState: NO_STREAM });
      expect(again.nextExpectedRevision).toBe(first.nextExpectedRevision);
      expect((await collect(client.readStream(stream))).map((e) => e.event!.id)).toEqual(
        events.map((e) => e.id),
      );
    });

    it('a tombstoned stream refuses appends with StreamDeletedError', async () => {
      const stream = name('tomb');
      await client.appendToStream(stream, event('A'));
      await client.tombstoneStream(stream);
      expect(await errorOf(client.appendToStream(stream, event('B')))).toMatchObject({
        type: 'stream-deleted',
      });
    });

    it('honours the deadline: an append that cannot commit in time fails and is not written', async () => {
      const stream = name('late');
      standIn.appendDelayMs = 300;
      try {
        const error = await errorOf(client.appendToStream(stream, event('Late'), { deadline: 100 }));
        expect(error.type).toBe('deadline-exceeded');
      } finally {
        standIn.appendDelayMs = 0;
      }
      await sleep(400); // past the server-side delay: had it been written, it would be there now
      expect(await errorOf(collect(client.readStream(stream)))).toMatchObject({ type: 'stream-not-found' });
    });
  });
}

describe('stand-in through the real client: reads, subscriptions, deletes', () => {
  let standIn: KurrentStandIn;
  let client: KurrentDBClient;
  beforeAll(async () => {
    standIn = await startKurrentStandIn();
    client = KurrentDBClient.connectionString(standIn.url);
  });
  afterAll(async () => {
    await client?.dispose();
    await standIn?.stop();
  });

  it('is asked for its features at connect, like a server', async () => {
    await client.appendToStream(name('hello'), event('Hi'));
    expect(standIn.calls['getSupportedMethods']).toBe(1);
  });

  it('answers gossip: a client given kurrentdb+discover:// finds this node as the leader (both client halves)', async () => {
    const discovering = KurrentDBClient.connectionString(
      `kurrentdb+discover://127.0.0.1:${standIn.port}?tls=false`,
    );
    try {
      const stream = name('gossip');
      await discovering.appendToStream(stream, event('Found'));
      expect((await collect(discovering.readStream(stream))).map((e) => e.event!.type)).toEqual(['Found']);
      expect(standIn.calls['gossip']).toBe(2);
    } finally {
      await discovering.dispose();
    }
  });

  it('reads a stream forwards and backwards from a revision, with a count; a missing stream is not found', async () => {
    const stream = name('rs');
    await client.appendToStream(
      stream,
      Array.from({ length: 6 }, (_, i) => event('R', { i })),
    );
    const revisions = (events: ResolvedEvent[]) => events.map((e) => e.event!.revision);
    expect(revisions(await collect(client.readStream(stream, { fromRevision: 2n, maxCount: 3 })))).toEqual([
      2n,
      3n,
      4n,
    ]);
    expect(
      revisions(await collect(client.readStream(stream, { direction: BACKWARDS, fromRevision: END }))),
    ).toEqual([5n, 4n, 3n, 2n, 1n, 0n]);
    expect(
      revisions(
        await collect(client.readStream(stream, { direction: BACKWARDS, fromRevision: 3n, maxCount: 2 })),
      ),
    ).toEqual([3n, 2n]);
    const [first] = await collect(client.readStream(stream, { maxCount: 1 }));
    expect(first!.event).toMatchObject({ streamId: stream, type: 'R', data: { i: 0 }, isJson: true });
    expect(first!.event!.position!.commit).toBeGreaterThan(0n);
    expect(await errorOf(collect(client.readStream(name('missing'))))).toMatchObject({
      type: 'stream-not-found',
    });
  });

  it('reads $all in position order both ways, inclusive forwards and exclusive backwards from a position', async () => {
    const stream = name('all');
    const written = await client.appendToStream(stream, [event('A'), event('B'), event('C')]);
    const ours = (events: AllStreamResolvedEvent[]) =>
      events.filter((e) => e.event?.streamId === stream).map((e) => e.event!.type);
    const all = await collect(client.readAll({ fromPosition: START }));
    expect(ours(all)).toEqual(['A', 'B', 'C']);
    const positions = all.map((e) => e.event!.position!);
    for (let i = 1; i < positions.length; i++) {
      const [a, b] = [positions[i - 1]!, positions[i]!];
      expect(a.commit < b.commit || (a.commit === b.commit && a.prepare < b.prepare)).toBe(true);
    }
    // The three events of one append share a commit position and differ in prepare position.
    const mine = all.filter((e) => e.event?.streamId === stream).map((e) => e.event!.position!);
    expect(new Set(mine.map((p) => p.commit)).size).toBe(1);
    expect(new Set(mine.map((p) => p.prepare)).size).toBe(3);
    const fromB: Position = mine[1]!;
    expect(ours(await collect(client.readAll({ fromPosition: fromB, maxCount: 10 })))).toEqual(['B', 'C']);
    expect(
      ours(await collect(client.readAll({ fromPosition: fromB, direction: BACKWARDS, maxCount: 1 }))),
    ).toEqual(['A']);
    const [last] = await collect(client.readAll({ fromPosition: END, direction: BACKWARDS, maxCount: 1 }));
    expect(last!.event!.position).toEqual(written.position);
  });

  it('filters $all by stream-name prefix and regex, event-type prefix and regex, and excludes system events', async () => {
    const u = randomUUID().slice(0, 8);
    const start = (
      await collect(client.readAll({ fromPosition: END, direction: BACKWARDS, maxCount: 1 }))
    )[0]!.event!.position!;
    await client.appendToStream(`fa${u}-1`, [event(`Keep${u}`), event(`Drop${u}`)]);
    await client.appendToStream(`fb${u}-1`, [event(`Keep${u}`)]);
    await client.deleteStream(`fb${u}-1`); // a $metadata event in $$fb…
    const types = async (options: { filter?: Filter }) =>
      (await collect(client.readAll({ ...options, fromPosition: start, maxCount: 100 }))).map(
        (e) => `${e.event!.streamId}/${e.event!.type}`,
      );
    expect(await types({ filter: streamNameFilter({ prefixes: [`fa${u}`] }) })).toEqual([
      `fa${u}-1/Keep${u}`,
      `fa${u}-1/Drop${u}`,
    ]);
    expect(await types({ filter: streamNameFilter({ regex: `^f[ab]${u}-1$` }) })).toEqual([
      `fa${u}-1/Keep${u}`,
      `fa${u}-1/Drop${u}`,
      `fb${u}-1/Keep${u}`,
    ]);
    expect(await types({ filter: eventTypeFilter({ prefixes: [`Keep${u}`] }) })).toEqual([
      `fa${u}-1/Keep${u}`,
      `fb${u}-1/Keep${u}`,
    ]);
    expect(await types({ filter: eventTypeFilter({ regex: `^Drop${u}$` }) })).toEqual([`fa${u}-1/Drop${u}`]);
    const everything = await types({});
    expect(everything).toContain(`$$fb${u}-1/$metadata`);
    expect(await types({ filter: excludeSystemEvents() })).toEqual(
      everything.filter((entry) => !entry.includes('/$')),
    );
  });

  it('subscribeToAll from a position: confirmation, catch-up after the position, caught-up, then live; filtered ones get checkpoints', async () => {
    const prefix = name('sub');
    const before = await client.appendToStream(`${prefix}-1`, [event('Old'), event('Mid')]);
    const checkpoints: Position[] = [];
    const subscription = client.subscribeToAll({
      fromPosition: { commit: before.position!.commit, prepare: before.position!.commit },
      filter: streamNameFilter({
        prefixes: [prefix],
        maxSearchWindow: 1,
        checkpointInterval: 1,
        checkpointReached: async (_subscription, position) => {
          checkpoints.push(position);
        },
      }),
    });
    const seen: string[] = [];
    let caughtUp = false;
    subscription.on('data', (resolved: AllStreamResolvedEvent) => seen.push(resolved.event!.type));
    subscription.on('caughtUp', () => (caughtUp = true));
    try {
      await vitestEventually(() => caughtUp);
      expect(seen).toEqual(['Mid']); // after the start position: Old is at it
      await client.appendToStream(name('other'), event('Elsewhere'));
      const live = await client.appendToStream(`${prefix}-2`, event('Live'));
      await vitestEventually(() => seen.length === 2);
      expect(seen).toEqual(['Mid', 'Live']);
      await vitestEventually(() =>
        checkpoints.some((p) => p.commit === live.position!.commit && p.prepare === live.position!.prepare),
      );
    } finally {
      await subscription.unsubscribe();
    }
  });

  it('soft delete: not found until written again; revisions continue; $tb is 2^63-1, then the first new revision', async () => {
    const stream = name('soft');
    await client.appendToStream(stream, [event('A'), event('B')]);
    await client.deleteStream(stream);
    expect(await errorOf(collect(client.readStream(stream)))).toMatchObject({ type: 'stream-not-found' });
    expect((await client.getStreamMetadata(stream)).metadata?.truncateBefore).toBeGreaterThan(
      Number.MAX_SAFE_INTEGER,
    );
    const again = await client.appendToStream(stream, event('C'), { streamState: NO_STREAM });
    expect(again.nextExpectedRevision).toBe(2n);
    expect((await collect(client.readStream(stream))).map((e) => [e.event!.revision, e.event!.type])).toEqual(
      [[2n, 'C']],
    );
    expect((await client.getStreamMetadata(stream)).metadata?.truncateBefore).toBe(2);
    // Only the first write after the delete may say NO_STREAM.
    expect(
      await errorOf(client.appendToStream(stream, event('D'), { streamState: NO_STREAM })),
    ).toMatchObject({
      type: 'wrong-expected-version',
      actualState: 2n,
    });
    // Soft-deleted events stay in $all until a scavenge.
    const all = await collect(client.readAll({ fromPosition: START }));
    expect(all.filter((e) => e.event?.streamId === stream).map((e) => e.event!.type)).toEqual([
      'A',
      'B',
      'C',
    ]);
  });

  it('tombstone: reads, metadata reads, deletes and appends fail with StreamDeletedError for good', async () => {
    const stream = name('hard');
    await client.appendToStream(stream, event('A'));
    await client.tombstoneStream(stream);
    expect(await errorOf(collect(client.readStream(stream)))).toMatchObject({ type: 'stream-deleted' });
    expect(await errorOf(client.deleteStream(stream))).toMatchObject({
      type: 'stream-deleted',
      streamName: stream,
    });
    expect(await errorOf(client.tombstoneStream(stream))).toMatchObject({ type: 'stream-deleted' });
    // Tombstoning or deleting a stream that never existed is allowed.
    await client.tombstoneStream(name('never'));
    await client.deleteStream(name('never'));
    expect(await errorOf(client.deleteStream(name('never'), { expectedRevision: 0n }))).toMatchObject({
      type: 'wrong-expected-version',
    });
  });
});

async function vitestEventually(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}

describe('stand-in log file', () => {
  it('replays every whole append and drops one cut short by a kill', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zw-standin-'));
    try {
      const file = join(dir, 'log.jsonl');
      const log = new StandInLog(file);
      const payload = (type: string) => ({
        id: randomUUID(),
        type,
        contentType: 'application/json',
        data: Buffer.from('{}'),
        metadata: Buffer.alloc(0),
      });
      log.append('s-1', { kind: 'no_stream' }, [payload('A'), payload('B')]);
      log.softDelete('s-1', { kind: 'any' });
      log.append('s-1', { kind: 'any' }, [payload('C')]);
      const text = readFileSync(file, 'utf8');
      // A three-event append of which only one and a half lines reached the file.
      const torn = [JSON.stringify({ w: 99, n: 3, s: 's-2' }), '{"w":99,"n":3,"s":"s-2","r":"1'].join('\n');
      writeFileSync(file, text + torn);
      const replayed = new StandInLog(file);
      expect(replayed.all.map((e) => [e.stream, e.type, e.position])).toEqual(
        log.all.map((e) => [e.stream, e.type, e.position]),
      );
      expect(replayed.readStream('s-1').events.map((e) => [e.revision, e.type])).toEqual([[2n, 'C']]);
      expect(replayed.truncateBefore('s-1')).toBe(2n);
      expect(replayed.readStream('s-2').found).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SIGKILL and restart of the stand-in under the adapter', () => {
  let dir: string;
  let pg: TestPostgres;
  let server: StandInProcess | undefined;
  const stores: EventStore[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'zw-standin-'));
    pg = await openTestPostgres();
  });
  afterAll(async () => {
    await Promise.all(stores.map((store) => store.close().catch(() => undefined)));
    await server?.kill();
    await pg?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('clients reconnect; retried appends are stored once; subscriptions resume from their checkpoint with no gap and no repeat', async () => {
    const file = join(dir, 'log.jsonl');
    server = await spawnStandIn(file);
    const port = server.port;
    const store = await openKurrentEventStore({ url: server.url, db: pg.db });
    stores.push(store);
    const prefix = name('crash');
    const delivered: RecordedEvent[] = [];
    const subscribe = (on: EventStore) =>
      on.subscribe(
        `sink-${prefix}`,
        { batchSize: 7, pollIntervalMs: 100, retryDelayMs: 50, filter: { streamPrefixes: [prefix] } },
        async (events) => {
          delivered.push(...events);
        },
      );
    let subscription = subscribe(store);

    // Three writers; each retries an append (same event ids) until it is acknowledged.
    const acknowledged = new Map<string, RecordedEvent>();
    let failures = 0;
    let stopWriting = false;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; !stopWriting; i++) {
        const events = [
          { id: randomUUID(), type: 'Tick', data: { w, i } },
          { id: randomUUID(), type: 'Tock', data: { w, i } },
        ];
        for (;;) {
          try {
            const result = await store.append(`${prefix}-${w}`, events, { expectedVersion: 'any' });
            for (const e of result.events) acknowledged.set(e.id, e);
            break;
          } catch {
            failures += 1;
            await sleep(50);
          }
        }
      }
    };
    const writers = Promise.all([0, 1, 2].map(writer));
    await vitestEventually(() => acknowledged.size >= 24, 20_000);
    await server.kill();
    const killedAt = acknowledged.size;
    await sleep(300);
    server = await spawnStandIn(file, port);
    await vitestEventually(() => acknowledged.size >= killedAt + 24, 30_000);
    stopWriting = true;
    await writers;
    expect(failures).toBeGreaterThan(0); // the kill did interrupt the writers

    const newest = [...acknowledged.values()].reduce((a, b) =>
      store.compareCheckpoints(a.position, b.position) >= 0 ? a : b,
    );
    expect(await subscription.waitFor(newest.position, 30_000)).toBe(true);
    await subscription.stop();

    // Everything stored under the prefix is exactly what was acknowledged: retries were deduplicated.
    const stored = (await store.readAll({ filter: { streamPrefixes: [prefix] }, limit: 10_000 })).events;
    expect(new Set(stored.map((e) => e.id))).toEqual(new Set(acknowledged.keys()));
    expect(stored).toHaveLength(acknowledged.size);
    for (const e of stored) expect(acknowledged.get(e.id)!.position).toBe(e.position);
    // Delivered: every stored event once, in $all order, each stream contiguous.
    expect(delivered.map((e) => e.id)).toEqual(stored.map((e) => e.id));
    const lastByStream = new Map<string, number>();
    for (const e of delivered) {
      expect(e.streamPosition).toBe((lastByStream.get(e.stream) ?? 0) + 1);
      lastByStream.set(e.stream, e.streamPosition);
    }

    // Killed again while the subscription is stopped: a new process (a new client) resumes it from its
    // checkpoint and gets exactly what was appended after it, nothing from before.
    const checkpoint = await store.readCheckpoint(`sink-${prefix}`);
    expect(checkpoint).toBe(subscription.position());
    await server.kill();
    server = await spawnStandIn(file, port);
    const next = await openKurrentEventStore({ url: server.url, db: pg.db });
    stores.push(next);
    const before = delivered.length;
    const later = await next.append(`${prefix}-9`, [
      { type: 'After', data: { n: 1 } },
      { type: 'After', data: { n: 2 } },
    ]);
    subscription = subscribe(next);
    expect(await subscription.waitFor(later.position, 15_000)).toBe(true);
    await subscription.stop();
    expect(delivered.slice(before).map((e) => e.id)).toEqual(later.events.map((e) => e.id));
    expect(store.compareCheckpoints(later.events[0]!.position, checkpoint)).toBe(1);
  });
});
