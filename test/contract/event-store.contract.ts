/**
 * The event-store contract: every adapter runs this same suite (test/contract/<adapter>.test.ts).
 * A harness is opened once per file (PGlite's cold start is ~4 s) and emptied between tests.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  START,
  type AppendResult,
  type Checkpoint,
  type EventStore,
  type RecordedEvent,
  type Subscription,
  type SubscriptionOptions,
} from '../../src/store/port.ts';
import { DuplicateEventIdError, WrongExpectedVersionError } from '../../src/store/errors.ts';

export interface ContractHarness {
  readonly store: EventStore;
  /** Empties the store between tests. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export interface ContractTarget {
  readonly name: string;
  open(): Promise<ContractHarness>;
  /** Skipped (reported as skipped, never as passed), e.g. when the server is not configured. */
  readonly skip?: boolean;
  /** The checkpoint format of this adapter. */
  readonly checkpointPattern: RegExp;
  /**
   * True when an event id is unique across the whole store (SQL). KurrentDB only deduplicates retries; for
   * it the suite checks that a reused id is stored as a new event instead.
   */
  readonly uniqueEventIds?: boolean;
  /**
   * The resolution of `createdAt` as read back (default 1 ms). The KurrentDB client reads through its Rust
   * bridge, which gives whole seconds.
   */
  readonly createdAtResolutionMs?: number;
  /** fast-check runs of the concurrency property. */
  readonly propertyRuns?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function uid(): string {
  return randomUUID().slice(0, 8);
}

function ev(
  type: string,
  data: Record<string, unknown> = {},
): { type: string; data: Record<string, unknown> } {
  return { type, data };
}

export function eventStoreContract(target: ContractTarget): void {
  describe.skipIf(target.skip === true)(`EventStore contract: ${target.name}`, () => {
    let harness: ContractHarness;
    let store: EventStore;
    const running: Subscription[] = [];

    /** Subscribes to the streams starting with `prefix` only, so a store with older events works too. */
    const subscribe = (
      name: string,
      prefix: string,
      options: SubscriptionOptions,
      handler: (events: readonly RecordedEvent[]) => Promise<void>,
    ): Subscription => {
      const subscription = store.subscribe(
        name,
        {
          pollIntervalMs: 50,
          retryDelayMs: 20,
          ...options,
          filter: { ...options.filter, streamPrefixes: [prefix] },
        },
        handler,
      );
      running.push(subscription);
      return subscription;
    };

    /**
     * Waits until `position` is visible to readAll. Immediate on PGlite; on a shared PostgreSQL any open
     * write transaction in the cluster (another test database included) holds the gap-safe horizon back
     * for as long as it stays open.
     */
    const visible = async (position: Checkpoint): Promise<void> => {
      await eventually(
        async () => store.compareCheckpoints(await store.headPosition(), position) >= 0,
        10_000,
        `position ${position} to become visible`,
      );
    };

    beforeAll(async () => {
      harness = await target.open();
      store = harness.store;
    });
    afterAll(async () => {
      await harness?.close();
    });
    beforeEach(async () => {
      await harness.reset();
    });
    afterEach(async () => {
      await Promise.all(running.splice(0).map((s) => s.stop()));
    });

    describe('append and read', () => {
      it('appends events and reads them back in order', async () => {
        const stream = `order-${uid()}`;
        const result = await store.append(
          stream,
          [
            { type: 'Created', data: { n: 1 }, metadata: { correlationId: 'c1' } },
            ev('Updated', { n: 2 }),
            ev('Updated', { n: 3, nested: { ok: true, list: [1, 'a'] } }),
          ],
          { expectedVersion: 'no_stream' },
        );
        expect(result.nextVersion).toBe(3);
        expect(result.events.map((e) => e.streamPosition)).toEqual([1, 2, 3]);
        expect(result.position).toBe(result.events[2]!.position);
        const read = await store.readStream(stream);
        expect(read.map((e) => [e.id, e.stream, e.streamPosition, e.type, e.data, e.position])).toEqual(
          result.events.map((e) => [e.id, stream, e.streamPosition, e.type, e.data, e.position]),
        );
        expect(read[0]!.metadata).toEqual({ correlationId: 'c1' });
        expect(read[1]!.metadata).toEqual({});
        expect(read[2]!.data).toEqual({ n: 3, nested: { ok: true, list: [1, 'a'] } });
        expect(read[0]!.createdAt).toBeInstanceOf(Date);
        expect(Math.abs(read[0]!.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
        expect(await store.streamVersion(stream)).toBe(3);
        expect(await store.streamVersion(`order-${uid()}`)).toBe(0);
        expect(await store.readStream(`order-${uid()}`)).toEqual([]);
      });

      it('keeps given event ids and generates missing ones', async () => {
        const stream = `ids-${uid()}`;
        const id = randomUUID();
        const result = await store.append(stream, [{ id, type: 'A', data: {} }, ev('B')]);
        expect(result.events[0]!.id).toBe(id);
        expect(result.events[1]!.id).toMatch(
          /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
        );
        expect((await store.readStream(stream)).map((e) => e.id)).toEqual(result.events.map((e) => e.id));
      });

      it('a retried append (same ids, same expected version) is never stored twice', async () => {
        const stream = `retry-${uid()}`;
        const events = [
          { id: randomUUID(), type: 'A', data: {} },
          { id: randomUUID(), type: 'B', data: {} },
        ];
        await store.append(stream, events, { expectedVersion: 'no_stream' });
        await store.append(stream, events, { expectedVersion: 'no_stream' }).catch((error: unknown) => {
          expect(error instanceof WrongExpectedVersionError || error instanceof DuplicateEventIdError).toBe(
            true,
          );
        });
        expect((await store.readStream(stream)).map((e) => e.id)).toEqual(events.map((e) => e.id));
        expect(await store.streamVersion(stream)).toBe(2);
      });

      if (target.uniqueEventIds === true) {
        it('rejects an event id that is stored anywhere (DuplicateEventIdError)', async () => {
          const stream = `dup-${uid()}`;
          const id = randomUUID();
          const stored = await store.append(stream, [{ id, type: 'A', data: {} }, ev('B')]);
          await expect(
            store.append(stream, [{ id, type: 'A', data: {} }], { expectedVersion: 2 }),
          ).rejects.toBeInstanceOf(DuplicateEventIdError);
          await expect(store.append(`dup-${uid()}`, [{ id, type: 'A', data: {} }])).rejects.toBeInstanceOf(
            DuplicateEventIdError,
          );
          await expect(
            store.append(`dup-${uid()}`, [ev('C'), { id, type: 'A', data: {} }], { expectedVersion: 'any' }),
          ).rejects.toBeInstanceOf(DuplicateEventIdError);
          await visible(stored.position);
          const all = await store.readAll({ filter: { streamPrefixes: ['dup-'] } });
          expect(all.events.filter((e) => e.id === id)).toHaveLength(1);
          expect(all.events).toHaveLength(2);
          expect(await store.streamVersion(stream)).toBe(2);
        });
      } else {
        // KurrentDB deduplicates only an exact retry: the same id elsewhere is a new event.
        it('stores an event id reused outside an exact retry as a new event', async () => {
          const prefix = `reuse${uid()}-`;
          const id = randomUUID();
          const start = await store.headPosition();
          const first = await store.append(`${prefix}1`, [{ id, type: 'A', data: {} }, ev('B')]);
          const other = await store.append(`${prefix}2`, [{ id, type: 'A', data: {} }]);
          expect(other.events[0]!.id).toBe(id);
          await visible(other.position);
          const all = await store.readAll({ after: start, filter: { streamPrefixes: [prefix] } });
          expect(all.events.map((e) => [e.stream, e.id === id])).toEqual([
            [`${prefix}1`, true],
            [`${prefix}1`, false],
            [`${prefix}2`, true],
          ]);
          expect(first.events[0]!.position).not.toBe(other.events[0]!.position);
        });
      }

      it('rejects an empty append', async () => {
        await expect(store.append(`empty-${uid()}`, [])).rejects.toThrow(/no events/);
      });

      it('gives every append a later position; checkpoints have the adapter format and compare in order', async () => {
        const u = uid();
        const results: AppendResult[] = [];
        for (let i = 0; i < 5; i++)
          results.push(await store.append(`pos${u}-${i % 2}`, [ev('P', { i }), ev('P', { i })]));
        const positions = results.flatMap((r) => r.events.map((e) => e.position));
        for (const position of positions) expect(position).toMatch(target.checkpointPattern);
        expect(store.compareCheckpoints(START, positions[0]!)).toBe(-1);
        for (let i = 1; i < positions.length; i++) {
          expect(store.compareCheckpoints(positions[i - 1]!, positions[i]!)).toBe(-1);
          expect(store.compareCheckpoints(positions[i]!, positions[i - 1]!)).toBe(1);
        }
        expect(store.compareCheckpoints(positions[2]!, positions[2]!)).toBe(0);
      });

      it('makes an append visible to readAll and headPosition (at once when no other writer is open)', async () => {
        for (let i = 0; i < 5; i++) {
          const before = await store.headPosition();
          const result = await store.append(`see-${uid()}`, [ev('S', { i })]);
          await visible(result.position);
          expect(await store.headPosition()).toBe(result.position);
          const page = await store.readAll({ after: before });
          expect(page.events.map((e) => e.id)).toEqual([result.events[0]!.id]);
          expect(page.caughtUp).toBe(true);
          expect(page.next).toBe(result.position);
        }
      });

      it('notifies onAppended listeners after each append, until unsubscribed', async () => {
        const seen: Array<[string, number]> = [];
        const off = store.onAppended((result, stream) => seen.push([stream, result.nextVersion]));
        const stream = `sig-${uid()}`;
        await store.append(stream, [ev('A')]);
        await store.append(stream, [ev('A'), ev('B')]);
        off();
        await store.append(stream, [ev('C')]);
        expect(seen).toEqual([
          [stream, 1],
          [stream, 3],
        ]);
      });

      it('pings', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });

    describe('expected version', () => {
      it('accepts the right version and rejects a wrong one with the actual version', async () => {
        const stream = `ev-${uid()}`;
        await store.append(stream, [ev('A')], { expectedVersion: 0 });
        await store.append(stream, [ev('B'), ev('C')], { expectedVersion: 1 });
        const stale = await store.append(stream, [ev('D')], { expectedVersion: 1 }).catch((e: unknown) => e);
        expect(stale).toBeInstanceOf(WrongExpectedVersionError);
        expect((stale as WrongExpectedVersionError).actual).toBe(3);
        expect((stale as WrongExpectedVersionError).stream).toBe(stream);
        const ahead = await store.append(stream, [ev('D')], { expectedVersion: 7 }).catch((e: unknown) => e);
        expect(ahead).toBeInstanceOf(WrongExpectedVersionError);
        expect(await store.streamVersion(stream)).toBe(3);
      });

      it("'no_stream' succeeds only on a stream that does not exist", async () => {
        const stream = `ns-${uid()}`;
        await store.append(stream, [ev('A')], { expectedVersion: 'no_stream' });
        const again = await store
          .append(stream, [ev('A')], { expectedVersion: 'no_stream' })
          .catch((e: unknown) => e);
        expect(again).toBeInstanceOf(WrongExpectedVersionError);
        expect((again as WrongExpectedVersionError).actual).toBe(1);
        const missing = await store
          .append(`ns-${uid()}`, [ev('A')], { expectedVersion: 4 })
          .catch((e: unknown) => e);
        expect(missing).toBeInstanceOf(WrongExpectedVersionError);
        expect((missing as WrongExpectedVersionError).actual).toBe(0);
      });

      it("'any' never gives a false conflict, even under concurrency; positions stay contiguous", async () => {
        const stream = `any-${uid()}`;
        const results = await Promise.all(
          Array.from({ length: 24 }, (_, i) =>
            store.append(stream, [ev('A', { i })], { expectedVersion: 'any' }),
          ),
        );
        expect(results.map((r) => r.nextVersion).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 24 }, (_, i) => i + 1),
        );
        const read = await store.readStream(stream);
        expect(read.map((e) => e.streamPosition)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
        expect(await store.streamVersion(stream)).toBe(24);
      });

      it('concurrent writers on one stream: exactly one winner per version, positions contiguous', async () => {
        const stream = `race-${uid()}`;
        const winners: number[] = [];
        let conflicts = 0;
        const writer = async (w: number): Promise<void> => {
          for (let attempt = 0; attempt < 8; attempt++) {
            const version = await store.streamVersion(stream);
            try {
              const result = await store.append(stream, [ev('W', { w, attempt }), ev('W2', { w })], {
                expectedVersion: version,
              });
              expect(result.nextVersion).toBe(version + 2);
              winners.push(version);
            } catch (error) {
              expect(error).toBeInstanceOf(WrongExpectedVersionError);
              conflicts += 1;
            }
          }
        };
        await Promise.all(Array.from({ length: 6 }, (_, w) => writer(w)));
        const final = await store.streamVersion(stream);
        expect(winners.length * 2).toBe(final);
        expect(new Set(winners).size).toBe(winners.length);
        expect([...winners].sort((a, b) => a - b)).toEqual(
          Array.from({ length: winners.length }, (_, i) => i * 2),
        );
        const read = await store.readStream(stream);
        expect(read.map((e) => e.streamPosition)).toEqual(Array.from({ length: final }, (_, i) => i + 1));
        expect(winners.length + conflicts).toBe(48);
      });
    });

    describe('readStream bounds', () => {
      it('reads a range forward and backward, with a limit', async () => {
        const stream = `range-${uid()}`;
        await store.append(
          stream,
          Array.from({ length: 10 }, (_, i) => ev('R', { i: i + 1 })),
        );
        const versions = (events: RecordedEvent[]): number[] => events.map((e) => e.streamPosition);
        expect(versions(await store.readStream(stream, { fromVersion: 4 }))).toEqual([4, 5, 6, 7, 8, 9, 10]);
        expect(versions(await store.readStream(stream, { fromVersion: 4, toVersion: 6 }))).toEqual([4, 5, 6]);
        expect(versions(await store.readStream(stream, { limit: 3 }))).toEqual([1, 2, 3]);
        expect(versions(await store.readStream(stream, { direction: 'backward' }))).toEqual([
          10, 9, 8, 7, 6, 5, 4, 3, 2, 1,
        ]);
        expect(versions(await store.readStream(stream, { direction: 'backward', limit: 2 }))).toEqual([
          10, 9,
        ]);
        expect(
          versions(await store.readStream(stream, { direction: 'backward', fromVersion: 3, toVersion: 5 })),
        ).toEqual([5, 4, 3]);
        expect(versions(await store.readStream(stream, { fromVersion: 11 }))).toEqual([]);
        expect((await store.readStream(stream, { toVersion: 2 })).map((e) => e.data)).toEqual([
          { i: 1 },
          { i: 2 },
        ]);
      });

      it('reads up to a moment (until) for audit replay', async () => {
        const stream = `until-${uid()}`;
        const first = await store.append(stream, [ev('T1'), ev('T2')]);
        // T3 must be created in a later tick of the store's clock than T2.
        await sleep(30 + (target.createdAtResolutionMs ?? 0));
        const third = await store.append(stream, [ev('T3')]);
        const moment = first.events[1]!.createdAt;
        await visible(third.position);
        expect((await store.readStream(stream, { until: moment })).map((e) => e.type)).toEqual(['T1', 'T2']);
        expect(
          (await store.readStream(stream, { until: new Date(moment.getTime() - 60_000) })).map((e) => e.type),
        ).toEqual([]);
        expect(
          (await store.readStream(stream, { until: new Date(Date.now() + 60_000) })).map((e) => e.type),
        ).toEqual(['T1', 'T2', 'T3']);
        const all = await store.readAll({ until: moment, filter: { streamPrefixes: [stream] } });
        expect(all.events.map((e) => e.type)).toEqual(['T1', 'T2']);
      });
    });

    describe('readAll', () => {
      it('pages through every event in append order and resumes after a checkpoint', async () => {
        const start = await store.headPosition();
        const appended: string[] = [];
        let last: Checkpoint = START;
        for (let i = 0; i < 25; i++) {
          const result = await store.append(`page-${i % 4}-${uid()}`, [ev('P', { i })]);
          appended.push(result.events[0]!.id);
          last = result.position;
        }
        await visible(last);
        const seen: string[] = [];
        let after: Checkpoint = start;
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.readAll({ after, limit: 10 });
          seen.push(...page.events.map((e) => e.id));
          after = page.next;
          if (page.caughtUp) break;
        }
        expect(seen).toEqual(appended);
        const rest = await store.readAll({ after });
        expect(rest.events).toEqual([]);
        expect(rest.caughtUp).toBe(true);
      });

      it('filters by stream prefix and event type, and moves past events filtered out', async () => {
        const u = uid();
        const start = await store.headPosition();
        await store.append(`alpha${u}-1`, [ev('Keep', { n: 1 }), ev('Drop')]);
        await store.append(`beta${u}-1`, [ev('Keep', { n: 2 })]);
        const last = await store.append(`alpha${u}-2`, [ev('Keep', { n: 3 }), ev('Drop')]);
        await visible(last.position);
        const filtered = await store.readAll({
          after: start,
          filter: { streamPrefixes: [`alpha${u}-`], eventTypes: ['Keep'] },
        });
        expect(filtered.events.map((e) => e.data['n'])).toEqual([1, 3]);
        expect(filtered.caughtUp).toBe(true);
        expect(filtered.next).toBe(last.position);
        const two = await store.readAll({
          after: start,
          filter: { streamPrefixes: [`beta${u}-`, `alpha${u}-2`] },
        });
        expect(two.events.map((e) => e.type)).toEqual(['Keep', 'Keep', 'Drop']);
        const none = await store.readAll({ after: start, filter: { streamPrefixes: [`gamma${u}-`] } });
        expect(none.events).toEqual([]);
        expect(none.next).toBe(last.position);
        const literal = await store.readAll({
          after: start,
          filter: { streamPrefixes: [`alpha${u}_`, `alpha${u}%`] },
        });
        expect(literal.events).toEqual([]);
        const typesOnly = await store.readAll({ after: start, filter: { eventTypes: ['Drop'] } });
        expect(typesOnly.events.map((e) => e.stream)).toEqual([`alpha${u}-1`, `alpha${u}-2`]);
      });

      it('filters by exact streams (never by prefix), pages through them, and moves past the rest', async () => {
        const u = uid();
        const start = await store.headPosition();
        await store.append(`one${u}-1`, [ev('A', { n: 1 })]);
        await store.append(`one${u}-10`, [ev('A', { n: 99 })]);
        await store.append(`two${u}-1`, [ev('B', { n: 2 })]);
        await store.append(`one${u}-1`, [ev('C', { n: 3 })]);
        const last = await store.append(`other${u}`, [ev('A', { n: 98 })]);
        await visible(last.position);
        const streams = [`one${u}-1`, `two${u}-1`];
        const all = await store.readAll({ after: start, filter: { streams } });
        expect(all.events.map((e) => e.data['n'])).toEqual([1, 2, 3]);
        expect(all.caughtUp).toBe(true);
        expect(all.next).toBe(last.position);
        // In pages of 2: KurrentDB may return fewer (it drops `one…-10` after the server's prefix match).
        const paged: unknown[] = [];
        let after = start;
        for (let pages = 0; ; pages += 1) {
          expect(pages).toBeLessThan(10);
          const page = await store.readAll({ after, limit: 2, filter: { streams } });
          expect(page.events.length).toBeLessThanOrEqual(2);
          paged.push(...page.events.map((e) => e.data['n']));
          after = page.next;
          if (page.caughtUp) break;
        }
        expect(paged).toEqual([1, 2, 3]);
        const typed = await store.readAll({ after: start, filter: { streams, eventTypes: ['C'] } });
        expect(typed.events.map((e) => e.data['n'])).toEqual([3]);
      });

      it('announces every append of this process to onNewEvents listeners, with its position', async () => {
        const seen: Array<Checkpoint | undefined> = [];
        const off = store.onNewEvents((position) => seen.push(position));
        const stream = `new-${uid()}`;
        const first = await store.append(stream, [ev('A')]);
        const second = await store.append(stream, [ev('B')]);
        off();
        await store.append(stream, [ev('C')]);
        // Other announcements (another process, a live feed) may arrive too, without a position.
        expect(seen.filter((p) => p !== undefined)).toEqual([first.position, second.position]);
      });
    });

    describe('deleteStream', () => {
      it('removes the events for good; the version goes back to 0 and the stream can start again', async () => {
        const stream = `gone-${uid()}`;
        const start = await store.headPosition();
        const kept = await store.append(`kept-${uid()}`, [ev('K')]);
        await store.append(stream, [ev('A'), ev('B'), ev('C')]);
        await store.deleteStream(stream);
        expect(await store.streamVersion(stream)).toBe(0);
        expect(await store.readStream(stream)).toEqual([]);
        await visible(kept.position);
        const all = await store.readAll({ after: start });
        expect(all.events.map((e) => e.id)).toEqual([kept.events[0]!.id]);
        const again = await store.append(stream, [ev('New')], { expectedVersion: 'no_stream' });
        expect(again.nextVersion).toBe(1);
        expect((await store.readStream(stream)).map((e) => [e.streamPosition, e.type])).toEqual([[1, 'New']]);
        await store.deleteStream(`never-${uid()}`);
      });
    });

    describe('subscriptions', () => {
      it('catches up, then delivers live appends; waitFor and position follow the checkpoint', async () => {
        const stream = `live-${uid()}`;
        const before = await store.append(stream, [ev('A'), ev('B')]);
        await visible(before.position);
        const seen: string[] = [];
        const sub = subscribe(`sub-${uid()}`, stream, { pollIntervalMs: 5_000 }, async (events) => {
          seen.push(...events.map((e) => e.type));
        });
        await sub.caughtUp;
        expect(seen).toEqual(['A', 'B']);
        const started = Date.now();
        const result = await store.append(stream, [ev('C')]);
        expect(await sub.waitFor(result.position, 4_000)).toBe(true);
        // Woken by the in-process append signal, not by the 5 s poll.
        expect(Date.now() - started).toBeLessThan(2_000);
        expect(seen).toEqual(['A', 'B', 'C']);
        expect(store.compareCheckpoints(sub.position(), result.position)).toBeGreaterThanOrEqual(0);
        expect(await sub.waitFor(`${'9'.repeat(20)}:${'9'.repeat(20)}` as Checkpoint, 100)).toBe(false);
        await sub.stop();
        expect(await store.readCheckpoint(sub.name)).toBe(sub.position());
      });

      it("startAt 'end' skips what was there before the first start", async () => {
        const prefix = `end${uid()}-`;
        await visible((await store.append(`${prefix}old`, [ev('Old')])).position);
        const seen: string[] = [];
        const sub = subscribe(`end-${uid()}`, prefix, { startAt: 'end' }, async (events) => {
          seen.push(...events.map((e) => e.type));
        });
        await sub.caughtUp;
        const result = await store.append(`${prefix}new`, [ev('New')]);
        expect(await sub.waitFor(result.position)).toBe(true);
        expect(seen).toEqual(['New']);
      });

      it('applies the filter; the checkpoint still moves past filtered-out events', async () => {
        const prefix = `filt${uid()}-`;
        const seen: string[] = [];
        const sub = subscribe(
          `filt-${uid()}`,
          prefix,
          { filter: { eventTypes: ['Wanted'] } },
          async (events) => {
            seen.push(...events.map((e) => e.type));
          },
        );
        await store.append(`${prefix}1`, [ev('Wanted'), ev('Other')]);
        const last = await store.append(`${prefix}2`, [ev('Other')]);
        expect(await sub.waitFor(last.position)).toBe(true);
        expect(seen).toEqual(['Wanted']);
      });

      it('resumes from its checkpoint: nothing skipped, no acknowledged batch delivered again', async () => {
        const name = `resume-${uid()}`;
        const stream = `res-${uid()}`;
        let last: Checkpoint = START;
        for (let i = 1; i <= 10; i++) last = (await store.append(stream, [ev('E', { i })])).position;
        const batches: number[][] = [];
        const handler = async (events: readonly RecordedEvent[]): Promise<void> => {
          batches.push(events.map((e) => e.data['i'] as number));
        };
        const first = subscribe(name, stream, { batchSize: 4 }, handler);
        expect(await first.waitFor(last)).toBe(true);
        await first.stop();
        expect(batches.flat()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        const acknowledged = batches.length;
        for (let i = 11; i <= 15; i++) last = (await store.append(stream, [ev('E', { i })])).position;
        const second = subscribe(name, stream, { batchSize: 4 }, handler);
        expect(await second.waitFor(last)).toBe(true);
        expect(batches.slice(acknowledged).flat()).toEqual([11, 12, 13, 14, 15]);
        expect(batches.flat()).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
      });

      it('a batch whose handler resolves after stop() was requested is acknowledged, not redelivered', async () => {
        const name = `inflight-${uid()}`;
        const stream = `inf-${uid()}`;
        await store.append(stream, [ev('A', { i: 1 }), ev('A', { i: 2 })]);
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        let entered!: () => void;
        const inHandler = new Promise<void>((resolve) => (entered = resolve));
        const first = subscribe(name, stream, {}, async () => {
          entered();
          await gate;
        });
        await inHandler;
        const stopping = first.stop();
        release();
        await stopping;
        const redelivered: number[] = [];
        const second = subscribe(name, stream, {}, async (events) => {
          redelivered.push(...events.map((e) => e.data['i'] as number));
        });
        await second.caughtUp;
        expect(redelivered).toEqual([]);
      });

      it('a failing handler: onError, the same batch again later, checkpoint unmoved meanwhile (at-least-once)', async () => {
        const name = `retry-${uid()}`;
        const stream = `ret-${uid()}`;
        const appended = await store.append(stream, [ev('A'), ev('B')]);
        const errors: unknown[] = [];
        const deliveries: string[][] = [];
        const checkpointsWhileFailing: Checkpoint[] = [];
        let failuresLeft = 2;
        const sub = subscribe(
          name,
          stream,
          { onError: (e) => errors.push(e), retryDelayMs: 20 },
          async (events) => {
            deliveries.push(events.map((e) => e.type));
            if (failuresLeft > 0) {
              failuresLeft -= 1;
              checkpointsWhileFailing.push(await store.readCheckpoint(name));
              throw new Error('sink down');
            }
          },
        );
        expect(await sub.waitFor(appended.position)).toBe(true);
        // Unmoved: still before the failing batch (on a store that cannot be emptied, pages of earlier
        // tests' events that the filter drops may have moved it before the batch was reached).
        expect(checkpointsWhileFailing).toHaveLength(2);
        expect(checkpointsWhileFailing[1]).toBe(checkpointsWhileFailing[0]);
        expect(store.compareCheckpoints(checkpointsWhileFailing[0]!, appended.events[0]!.position)).toBe(-1);
        expect(deliveries).toEqual([
          ['A', 'B'],
          ['A', 'B'],
          ['A', 'B'],
        ]);
        expect(errors).toHaveLength(2);
        expect((errors[0] as Error).message).toBe('sink down');
      });

      it('dead letters: an event that keeps failing is parked after maxAttempts and skipped', async () => {
        const name = `dead-${uid()}`;
        const stream = `dl-${uid()}`;
        const result = await store.append(stream, [
          ev('Ok', { i: 1 }),
          ev('Poison', { i: 2 }),
          ev('Ok', { i: 3 }),
        ]);
        const poison = result.events[1]!;
        const delivered: number[] = [];
        const sub = subscribe(
          name,
          stream,
          { maxAttempts: 3, retryDelayMs: 5, onError: () => undefined },
          async (events) => {
            if (events.some((e) => e.type === 'Poison')) throw new Error(`cannot handle ${poison.id}`);
            delivered.push(...events.map((e) => e.data['i'] as number));
          },
        );
        expect(await sub.waitFor(result.position)).toBe(true);
        expect(delivered).toEqual([1, 3]);
        const letters = await store.listDeadLetters(name);
        expect(letters).toHaveLength(1);
        expect(letters[0]).toMatchObject({ subscription: name, eventId: poison.id, attempts: 3 });
        expect(letters[0]!.error).toContain('cannot handle');
        expect(letters[0]!.failedAt).toBeInstanceOf(Date);
        await store.removeDeadLetter(name, poison.id);
        expect(await store.listDeadLetters(name)).toEqual([]);
      });

      it('dead letters can be added, listed, updated and removed directly; deleting the stream removes them', async () => {
        const stream = `dlx-${uid()}`;
        const { events } = await store.append(stream, [ev('X'), ev('Y')]);
        await store.addDeadLetter('sink-a', events[0]!, 'boom', 5);
        await store.addDeadLetter('sink-a', events[1]!, 'bang', 1);
        await store.addDeadLetter('sink-a', events[0]!, 'boom again', 6);
        await store.addDeadLetter('sink-b', events[0]!, 'other', 1);
        const listed = await store.listDeadLetters('sink-a');
        expect(listed.map((d) => [d.eventId, d.error, d.attempts])).toEqual([
          [events[0]!.id, 'boom again', 6],
          [events[1]!.id, 'bang', 1],
        ]);
        await store.removeDeadLetter('sink-a', events[1]!.id);
        expect((await store.listDeadLetters('sink-a')).map((d) => d.eventId)).toEqual([events[0]!.id]);
        await store.deleteStream(stream);
        expect(await store.listDeadLetters('sink-a')).toEqual([]);
        expect(await store.listDeadLetters('sink-b')).toEqual([]);
      });

      it('lease: two subscribers of one name never run at once; the second takes over where the first stopped', async () => {
        const name = `lease-${uid()}`;
        const stream = `ls-${uid()}`;
        let active = 0;
        let overlap = false;
        const byA: number[] = [];
        const byB: number[] = [];
        const handler = (into: number[]) => async (events: readonly RecordedEvent[]) => {
          active += 1;
          if (active > 1) overlap = true;
          // Longer than the lease: only renewal keeps the other subscriber out.
          await sleep(120);
          into.push(...events.map((e) => e.data['i'] as number));
          active -= 1;
        };
        for (let i = 1; i <= 3; i++) await store.append(stream, [ev('L', { i })]);
        const a = subscribe(name, stream, { leaseMs: 90, batchSize: 1 }, handler(byA));
        await eventually(() => byA.length > 0, 10_000, 'A to start');
        const b = subscribe(name, stream, { leaseMs: 90, batchSize: 1 }, handler(byB));
        await a.caughtUp;
        for (let i = 4; i <= 5; i++) await store.append(stream, [ev('L', { i })]);
        await eventually(() => byA.length === 5, 10_000, 'A to handle everything');
        await sleep(300);
        expect(byB).toEqual([]);
        await a.stop();
        const last = await store.append(stream, [ev('L', { i: 6 })]);
        expect(await b.waitFor(last.position)).toBe(true);
        expect(byA).toEqual([1, 2, 3, 4, 5]);
        expect(byB).toEqual([6]);
        expect(overlap).toBe(false);
      });

      it('resetCheckpoint refuses while the subscription runs, and replays from START after a stop', async () => {
        const name = `reset-${uid()}`;
        const stream = `rs-${uid()}`;
        const result = await store.append(stream, [ev('A'), ev('B')]);
        const seen: string[] = [];
        const handler = async (events: readonly RecordedEvent[]): Promise<void> => {
          seen.push(...events.map((e) => e.type));
        };
        const first = subscribe(name, stream, {}, handler);
        expect(await first.waitFor(result.position)).toBe(true);
        await expect(store.resetCheckpoint(name, START)).rejects.toThrow(/running|lease/);
        await first.stop();
        await store.resetCheckpoint(name, START);
        expect(await store.readCheckpoint(name)).toBe(START);
        const second = subscribe(name, stream, {}, handler);
        expect(await second.waitFor(result.position)).toBe(true);
        expect(seen).toEqual(['A', 'B', 'A', 'B']);
        await second.stop();
        await store.resetCheckpoint(name, result.events[0]!.position);
        expect(await store.readCheckpoint(name)).toBe(result.events[0]!.position);
        expect(await store.readCheckpoint(`unknown-${uid()}`)).toBe(START);
      });

      it('property: concurrent writers on many streams and a live subscriber — every committed event exactly once, in stream order', async () => {
        let run = 0;
        const writerOp = fc.record({
          stream: fc.integer({ min: 0, max: 5 }),
          count: fc.integer({ min: 1, max: 3 }),
          exact: fc.boolean(),
        });
        const scenario = fc.record({
          writers: fc.array(fc.array(writerOp, { minLength: 1, maxLength: 8 }), {
            minLength: 2,
            maxLength: 6,
          }),
          batchSize: fc.integer({ min: 1, max: 20 }),
        });
        await fc.assert(
          fc.asyncProperty(scenario, async ({ writers, batchSize }) => {
            run += 1;
            const prefix = `prop${run}x${uid()}-`;
            const committed = new Map<string, { stream: string; position: number }>();
            let newest: Checkpoint = START;
            const seen: RecordedEvent[] = [];
            const sub = store.subscribe(
              `prop-${prefix}`,
              { batchSize, pollIntervalMs: 50, filter: { streamPrefixes: [prefix] } },
              async (events) => {
                seen.push(...events);
              },
            );
            try {
              await Promise.all(
                writers.map(async (ops, w) => {
                  for (const op of ops) {
                    const stream = `${prefix}${op.stream}`;
                    const events = Array.from({ length: op.count }, (_, k) => ev('Prop', { w, k }));
                    for (let attempt = 0; attempt < 5; attempt++) {
                      const expectedVersion = op.exact ? await store.streamVersion(stream) : 'any';
                      try {
                        const result = await store.append(stream, events, { expectedVersion });
                        for (const e of result.events) {
                          committed.set(e.id, { stream, position: e.streamPosition });
                        }
                        if (store.compareCheckpoints(result.position, newest) > 0) newest = result.position;
                        break;
                      } catch (error) {
                        if (!(error instanceof WrongExpectedVersionError)) throw error;
                      }
                    }
                  }
                }),
              );
              // Every committed event is at or before the newest acknowledged position.
              expect(await sub.waitFor(newest, 15_000)).toBe(true);
            } finally {
              await sub.stop();
            }
            const ids = seen.map((e) => e.id);
            expect(new Set(ids).size).toBe(ids.length);
            expect(new Set(ids)).toEqual(new Set(committed.keys()));
            const lastByStream = new Map<string, number>();
            for (const event of seen) {
              const previous = lastByStream.get(event.stream) ?? 0;
              expect(event.streamPosition).toBe(previous + 1);
              lastByStream.set(event.stream, event.streamPosition);
              expect(committed.get(event.id)).toEqual({
                stream: event.stream,
                position: event.streamPosition,
              });
            }
            for (let i = 1; i < seen.length; i++) {
              expect(store.compareCheckpoints(seen[i - 1]!.position, seen[i]!.position)).toBe(-1);
            }
          }),
          { numRuns: target.propertyRuns ?? 12 },
        );
      });
    });
  });
}
