/**
 * The KurrentDB adapter against a fake of the client calls it makes (no server can run here): the whole
 * contract suite, plus the mapping details. Parity with a real server is checked only by
 * kurrentdb.test.ts, when EVENTSTORE_URL is set.
 */
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ANY, NO_STREAM } from '@kurrent/kurrentdb-client';
import { eventStoreContract } from './event-store.contract.ts';
import { FakeKurrentClient } from './fake-kurrentdb.ts';
import { openTestPostgres, type TestPostgres } from '../support/postgres.ts';
import { createKurrentEventStore, versionMapping } from '../../src/store/kurrentdb.ts';
import { WrongExpectedVersionError } from '../../src/store/errors.ts';
import type { EventStore } from '../../src/store/port.ts';

let shared: Promise<TestPostgres> | undefined;
const readModel = (): Promise<TestPostgres> => (shared ??= openTestPostgres());
afterAll(async () => {
  await (await shared)?.close();
});

eventStoreContract({
  name: 'kurrentdb (fake client)',
  checkpointPattern: /^\d{20}:\d{20}$/,
  uniqueEventIds: false,
  async open() {
    const readModelDb = await readModel();
    const client = new FakeKurrentClient();
    const store = createKurrentEventStore(client, { db: readModelDb.db });
    return {
      store,
      async reset() {
        client.clear();
        await readModelDb.truncate();
      },
      close: () => store.close(),
    };
  },
});

describe('KurrentDB mapping (fake client)', () => {
  let readModelDb: TestPostgres;
  let client: FakeKurrentClient;
  let store: EventStore;
  beforeEach(async () => {
    readModelDb = await readModel();
    await readModelDb.truncate();
    client = new FakeKurrentClient();
    store = createKurrentEventStore(client, { db: readModelDb.db });
  });

  it('maps our version (a count) to revisions (0-based) and 0 to NO_STREAM, shifted by $tb after a delete', () => {
    expect(versionMapping.toStreamState('any', 0n)).toBe(ANY);
    expect(versionMapping.toStreamState('no_stream', 0n)).toBe(NO_STREAM);
    expect(versionMapping.toStreamState(0, 0n)).toBe(NO_STREAM);
    expect(versionMapping.toStreamState(3, 0n)).toBe(2n);
    expect(versionMapping.toStreamState(0, 5n)).toBe(4n);
    expect(versionMapping.toStreamState(2, 5n)).toBe(6n);
    expect(versionMapping.toVersion(6n, 5n)).toBe(2);
    expect(versionMapping.toVersion(0n, 0n)).toBe(1);
    expect(versionMapping.toRevision(1, 5n)).toBe(5n);
    expect(() => versionMapping.toStreamState(-1, 0n)).toThrow(RangeError);
  });

  it('sends the mapped stream state and reads the written events back with their $all positions', async () => {
    const spy: unknown[] = [];
    const append = client.appendToStream.bind(client);
    client.appendToStream = (stream, events, options) => {
      spy.push(options.streamState);
      return append(stream, events, options);
    };
    const first = await store.append('m-1', [{ type: 'A', data: { a: 1 } }], {
      expectedVersion: 'no_stream',
    });
    const second = await store.append(
      'm-1',
      [
        { type: 'B', data: {} },
        { type: 'C', data: {} },
      ],
      { expectedVersion: 1 },
    );
    await store.append('m-1', [{ type: 'D', data: {} }]);
    expect(spy).toEqual([NO_STREAM, 0n, ANY]);
    expect(first.nextVersion).toBe(1);
    expect(second.nextVersion).toBe(3);
    const stored = client.log.filter((e) => e.streamId === 'm-1');
    expect(stored.map((e) => e.revision)).toEqual([0n, 1n, 2n, 3n]);
    expect(second.events.map((e) => e.position)).toEqual(
      stored
        .slice(1, 3)
        .map(
          (e) =>
            `${String(e.position.commit).padStart(20, '0')}:${String(e.position.prepare).padStart(20, '0')}`,
        ),
    );
    expect(first.events[0]!.data).toEqual({ a: 1 });
  });

  it('reports a conflict with our version numbers', async () => {
    await store.append('m-2', [
      { type: 'A', data: {} },
      { type: 'B', data: {} },
    ]);
    const error = await store
      .append('m-2', [{ type: 'C', data: {} }], { expectedVersion: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedVersionError);
    expect((error as WrongExpectedVersionError).actual).toBe(2);
    const missing = await store
      .append('m-3', [{ type: 'C', data: {} }], { expectedVersion: 2 })
      .catch((e: unknown) => e);
    expect((missing as WrongExpectedVersionError).actual).toBe(0);
  });

  it('readAll skips the inclusive start event and system events, and still moves past them', async () => {
    const a = await store.append('r-1', [{ type: 'A', data: {} }]);
    await store.deleteStream('r-1'); // writes a $metadata system event and truncates A
    const b = await store.append('r-2', [{ type: 'B', data: {} }]);
    const fromA = await store.readAll({ after: a.position });
    expect(fromA.events.map((e) => e.type)).toEqual(['B']);
    expect(fromA.next).toBe(b.position);
    const all = await store.readAll();
    expect(all.events.map((e) => e.type)).toEqual(['B']);
    const small = await store.readAll({ limit: 2 });
    expect(small.events).toEqual([]);
    expect(small.caughtUp).toBe(false);
    expect(store.compareCheckpoints(small.next, '' as never)).toBe(1);
  });

  it('after a soft delete, the stream restarts at version 1 while revisions continue', async () => {
    await store.append('d-1', [
      { type: 'A', data: {} },
      { type: 'B', data: {} },
    ]);
    await store.deleteStream('d-1');
    expect(await store.streamVersion('d-1')).toBe(0);
    const again = await store.append('d-1', [{ type: 'C', data: {} }], { expectedVersion: 'no_stream' });
    expect(again.nextVersion).toBe(1);
    await store.append('d-1', [{ type: 'D', data: {} }], { expectedVersion: 1 });
    expect((await store.readStream('d-1')).map((e) => [e.streamPosition, e.type])).toEqual([
      [1, 'C'],
      [2, 'D'],
    ]);
    expect(client.log.filter((e) => e.streamId === 'd-1').map((e) => e.revision)).toEqual([0n, 1n, 2n, 3n]);
  });

  it('notices a delete made by another process: a stale $tb is refreshed on conflict and the append retried', async () => {
    const other = createKurrentEventStore(client, { db: readModelDb.db });
    await store.append('s-1', [{ type: 'A', data: {} }]);
    expect(await store.streamVersion('s-1')).toBe(1); // caches $tb = 0
    await other.deleteStream('s-1');
    await other.append('s-1', [{ type: 'B', data: {} }], { expectedVersion: 'no_stream' });
    const result = await store.append('s-1', [{ type: 'C', data: {} }], { expectedVersion: 1 });
    expect(result.nextVersion).toBe(2);
    expect((await store.readStream('s-1')).map((e) => e.type)).toEqual(['B', 'C']);
  });

  it('a retried append (same ids, same expected version) is deduplicated by the server and returns the original events', async () => {
    const events = [
      { id: crypto.randomUUID(), type: 'A', data: {} },
      { id: crypto.randomUUID(), type: 'B', data: {} },
    ];
    const first = await store.append('i-1', events, { expectedVersion: 'no_stream' });
    const retried = await store.append('i-1', events, { expectedVersion: 'no_stream' });
    expect(retried.events.map((e) => e.position)).toEqual(first.events.map((e) => e.position));
    expect(client.log.filter((e) => e.streamId === 'i-1')).toHaveLength(2);
  });

  it('wakes subscriptions through subscribeToAll when another process appends', async () => {
    const other = createKurrentEventStore(client, { db: readModelDb.db });
    const seen: string[] = [];
    const sub = store.subscribe('live', { pollIntervalMs: 30_000 }, async (events) => {
      seen.push(...events.map((e) => e.type));
    });
    try {
      await sub.caughtUp;
      const started = Date.now();
      const result = await other.append('w-1', [{ type: 'Remote', data: {} }]);
      expect(await sub.waitFor(result.position, 5_000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(seen).toEqual(['Remote']);
    } finally {
      await sub.stop();
    }
  });

  it('close stops subscriptions and disposes the client', async () => {
    const sub = store.subscribe('closing', {}, async () => undefined);
    await sub.caughtUp;
    await store.close();
    expect(client.disposed).toBe(true);
    expect(() => store.subscribe('after', {}, async () => undefined)).toThrow(/closed/);
  });
});
