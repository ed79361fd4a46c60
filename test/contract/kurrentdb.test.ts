/**
 * The KurrentDB adapter through the real @kurrent/kurrentdb-client, on the wire: the contract suite plus the
 * mapping details (versions ↔ revisions, soft deletes, conflicts, live wake-ups across processes).
 *
 * Target, chosen by the environment:
 * - EVENTSTORE_URL set (e.g. kurrentdb://127.0.0.1:2113?tls=false): that KurrentDB/EventStoreDB server;
 * - unset: the gRPC stand-in (test/support/kurrentdb-standin), as a process of its own (like a server: its
 *   work does not delay this process's timers, e.g. lease renewals) on an ephemeral port.
 * Either way the same tests run and none is skipped. The read model (checkpoints, leases, dead letters) is
 * a fresh PostgreSQL database for this file.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ANY, NO_STREAM } from '@kurrent/kurrentdb-client';
import { eventStoreContract } from './event-store.contract.ts';
import { openTestPostgres, type TestPostgres } from '../support/postgres.ts';
import { spawnStandIn, type StandInProcess } from '../support/kurrentdb-standin/process.ts';
import { openKurrentEventStore, versionMapping } from '../../src/store/kurrentdb.ts';
import { WrongExpectedVersionError } from '../../src/store/errors.ts';
import type { EventStore } from '../../src/store/port.ts';

const realServer = process.env.EVENTSTORE_URL;

/** One server (or stand-in) and one read-model database for the whole file. */
interface Target {
  readonly url: string;
  readonly pg: TestPostgres;
  readonly standIn?: { server: StandInProcess; dir: string };
}
let shared: Promise<Target> | undefined;
function target(): Promise<Target> {
  shared ??= (async () => {
    const pg = await openTestPostgres();
    if (realServer) return { url: realServer, pg };
    const dir = mkdtempSync(join(tmpdir(), 'zw-kurrentdb-'));
    const server = await spawnStandIn(join(dir, 'log.jsonl'));
    return { url: server.url, pg, standIn: { server, dir } };
  })();
  return shared;
}
afterAll(async () => {
  const opened = await shared;
  await opened?.pg.close();
  await opened?.standIn?.server.kill();
  if (opened?.standIn) rmSync(opened.standIn.dir, { recursive: true, force: true });
});

eventStoreContract({
  name: realServer ? 'kurrentdb (EVENTSTORE_URL)' : 'kurrentdb (gRPC stand-in, real client)',
  checkpointPattern: /^\d{20}:\d{20}$/,
  uniqueEventIds: false,
  createdAtResolutionMs: 1000,
  // The stand-in answers in microseconds: fewer runs cover as many interleavings as a server's 10.
  propertyRuns: realServer ? 10 : 5,
  async open() {
    const { url, pg } = await target();
    const store = await openKurrentEventStore({ url, db: pg.db });
    return {
      store,
      // A server cannot be emptied: the suite uses fresh stream names per test, so only our own tables
      // are reset. Events of earlier tests stay in $all; the tests filter or read from known positions.
      reset: () => pg.truncate(),
      close: () => store.close(),
    };
  },
});

describe(`KurrentDB mapping (${realServer ? 'EVENTSTORE_URL' : 'gRPC stand-in'})`, () => {
  let url: string;
  let pg: TestPostgres;
  const opened: EventStore[] = [];
  const open = async (): Promise<EventStore> => {
    const store = await openKurrentEventStore({ url, db: pg.db });
    opened.push(store);
    return store;
  };
  let store: EventStore;
  const stream = (name: string): string => `${name}-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    ({ url, pg } = await target());
  });
  beforeEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
    await pg.truncate();
    store = await open();
  });
  afterAll(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
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

  it('reports a conflict with our version numbers', async () => {
    const name = stream('m');
    await store.append(name, [
      { type: 'A', data: {} },
      { type: 'B', data: {} },
    ]);
    const error = await store
      .append(name, [{ type: 'C', data: {} }], { expectedVersion: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedVersionError);
    expect((error as WrongExpectedVersionError).actual).toBe(2);
    const missing = await store
      .append(stream('m'), [{ type: 'C', data: {} }], { expectedVersion: 2 })
      .catch((e: unknown) => e);
    expect((missing as WrongExpectedVersionError).actual).toBe(0);
  });

  it('readAll skips the inclusive start event and system events ($metadata of a delete); a page the filter empties still moves to the head', async () => {
    const prefix = stream('r');
    const a = await store.append(`${prefix}-1`, [{ type: 'A', data: {} }]);
    await store.deleteStream(`${prefix}-1`); // writes a $metadata system event to $$<stream>
    const b = await store.append(`${prefix}-2`, [{ type: 'B', data: {} }]);
    const fromA = await store.readAll({ after: a.position });
    expect(fromA.events.map((e) => e.type)).toEqual(['B']);
    expect(fromA.next).toBe(b.position);
    const one = await store.readAll({ after: a.position, limit: 1 });
    expect(one.events.map((e) => e.type)).toEqual(['B']); // the server skipped the $metadata event
    expect(one.caughtUp).toBe(false);
    const none = await store.readAll({ after: a.position, filter: { streamPrefixes: [`${prefix}-none`] } });
    expect(none.events).toEqual([]);
    expect(none.caughtUp).toBe(true);
    expect(store.compareCheckpoints(none.next, b.position)).toBeGreaterThanOrEqual(0);
  });

  it('after a soft delete the stream restarts at version 1 while revisions continue, with every expected state', async () => {
    for (const expectedVersion of ['no_stream', 0, 'any'] as const) {
      const name = stream('d');
      await store.append(name, [
        { type: 'A', data: {} },
        { type: 'B', data: {} },
      ]);
      await store.deleteStream(name);
      expect(await store.streamVersion(name)).toBe(0);
      expect(await store.readStream(name)).toEqual([]);
      const again = await store.append(name, [{ type: 'C', data: {} }], { expectedVersion });
      expect(again.nextVersion).toBe(1);
      expect(again.events.map((e) => e.streamPosition)).toEqual([1]);
      const next = await store.append(name, [{ type: 'D', data: {} }], { expectedVersion: 1 });
      expect(next.nextVersion).toBe(2);
      expect((await store.readStream(name)).map((e) => [e.streamPosition, e.type])).toEqual([
        [1, 'C'],
        [2, 'D'],
      ]);
      expect(await store.streamVersion(name)).toBe(2);
      const stale = await store
        .append(name, [{ type: 'E', data: {} }], { expectedVersion: 4 })
        .catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(WrongExpectedVersionError);
      expect((stale as WrongExpectedVersionError).actual).toBe(2);
    }
  });

  it('a deleted stream that was not written since refuses a non-zero expected version with actual 0', async () => {
    const name = stream('z');
    await store.append(name, [
      { type: 'A', data: {} },
      { type: 'B', data: {} },
    ]);
    await store.deleteStream(name);
    // Expected 2 maps to the last revision, which the server would accept as a recreation.
    const error = await store
      .append(name, [{ type: 'C', data: {} }], { expectedVersion: 2 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedVersionError);
    expect((error as WrongExpectedVersionError).actual).toBe(0);
    expect(await store.streamVersion(name)).toBe(0);
  });

  it('notices a delete made by another process: a stale $tb is refreshed on conflict and the append retried', async () => {
    const other = await open();
    const name = stream('s');
    await store.append(name, [{ type: 'A', data: {} }]);
    expect(await store.streamVersion(name)).toBe(1); // caches $tb = 0
    await other.deleteStream(name);
    await other.append(name, [{ type: 'B', data: {} }], { expectedVersion: 'no_stream' });
    const result = await store.append(name, [{ type: 'C', data: {} }], { expectedVersion: 1 });
    expect(result.nextVersion).toBe(2);
    expect((await store.readStream(name)).map((e) => e.type)).toEqual(['B', 'C']);
  });

  it('a retried append (same ids, same expected version) is deduplicated by the server and returns the original events', async () => {
    const name = stream('i');
    const events = [
      { id: randomUUID(), type: 'A', data: {} },
      { id: randomUUID(), type: 'B', data: {} },
    ];
    const first = await store.append(name, events, { expectedVersion: 'no_stream' });
    const retried = await store.append(name, events, { expectedVersion: 'no_stream' });
    expect(retried.events.map((e) => [e.id, e.streamPosition, e.position])).toEqual(
      first.events.map((e) => [e.id, e.streamPosition, e.position]),
    );
    expect((await store.readStream(name)).map((e) => e.id)).toEqual(events.map((e) => e.id));
  });

  it('wakes subscriptions through subscribeToAll when another process appends', async () => {
    const other = await open();
    const prefix = stream('w');
    const seen: string[] = [];
    const sub = store.subscribe(
      `live-${prefix}`,
      { pollIntervalMs: 30_000, filter: { streamPrefixes: [prefix] } },
      async (events) => {
        seen.push(...events.map((e) => e.type));
      },
    );
    try {
      await sub.caughtUp;
      // The live feed is a server subscription from the end: give it time to be confirmed, or the append
      // lands before it and only the 30 s poll would find it.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const started = Date.now();
      const result = await other.append(`${prefix}-1`, [{ type: 'Remote', data: {} }]);
      expect(await sub.waitFor(result.position, 5_000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(seen).toEqual(['Remote']);
    } finally {
      await sub.stop();
    }
  });

  it('close stops subscriptions and refuses new ones', async () => {
    const own = await open();
    const sub = own.subscribe(`closing-${randomUUID()}`, {}, async () => undefined);
    await sub.caughtUp;
    await own.close();
    expect(() => own.subscribe('after', {}, async () => undefined)).toThrow(/closed/);
  });
});
