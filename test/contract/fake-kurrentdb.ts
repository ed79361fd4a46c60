/**
 * A small in-memory fake of the KurrentDB client calls the adapter makes (src/store/kurrentdb.ts
 * KurrentClientPort), mimicking the server behaviour the mapping depends on:
 * - revisions are 0-based; appendToStream checks streamState (ANY, NO_STREAM, a revision) and throws an
 *   error with type 'wrong-expected-version' and actualState (a bigint or 'no_stream');
 * - a retried append (same ids at the same expected revision) succeeds without writing (idempotency);
 * - $all positions are {commit, prepare}; readAll's fromPosition is INCLUSIVE; subscribeToAll from END
 *   delivers only later events;
 * - deleteStream is a soft delete: $tb = last revision + 1 in the stream's metadata (written as a system
 *   event '$metadata' to '$$<stream>'), reads of the stream fail with 'stream-not-found' until it is
 *   written again, revisions continue after $tb, and the deleted events stay in $all (until a scavenge);
 *   an append with NO_STREAM to a soft-deleted stream is rejected with the last revision as actual state
 *   (the stricter of the two behaviours the adapter handles);
 * - system events exist in $all ($metadata, and a '$statsCollected' event at start).
 * Every call yields to the event loop first, so concurrent callers interleave.
 */
import { EventEmitter } from 'node:events';
import type {
  AppendStreamState,
  Direction,
  EventData,
  Position,
  ReadPosition,
  ReadRevision,
} from '@kurrent/kurrentdb-client';
import type {
  KurrentClientPort,
  KurrentLiveFeed,
  KurrentRecordedEvent,
  KurrentResolvedEvent,
} from '../../src/store/kurrentdb.ts';

interface StoredEvent extends KurrentRecordedEvent {
  readonly position: Position;
}

interface StreamState {
  lastRevision: bigint;
  truncateBefore: bigint;
  /** Soft-deleted and not written since. */
  deleted: boolean;
}

class FakeError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly actualState?: bigint | 'no_stream',
  ) {
    super(message);
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function comparePosition(a: Position, b: Position): number {
  if (a.commit !== b.commit) return a.commit < b.commit ? -1 : 1;
  if (a.prepare !== b.prepare) return a.prepare < b.prepare ? -1 : 1;
  return 0;
}

export class FakeKurrentClient implements KurrentClientPort {
  readonly log: StoredEvent[] = [];
  private readonly streams = new Map<string, StreamState>();
  private readonly feeds = new Set<EventEmitter>();
  private nextCommit = 1_000n;
  calls = { append: 0, readAll: 0, readStream: 0, metadata: 0 };
  disposed = false;

  constructor() {
    this.write('$stats-127.0.0.1:2113', [
      { id: crypto.randomUUID(), type: '$statsCollected', data: {}, metadata: {} },
    ]);
  }

  /** Empties everything (the contract's reset between tests). */
  clear(): void {
    this.log.length = 0;
    this.streams.clear();
  }

  private write(
    stream: string,
    events: ReadonlyArray<{ id: string; type: string; data: unknown; metadata: unknown }>,
  ): bigint {
    const state = this.streams.get(stream) ?? { lastRevision: -1n, truncateBefore: 0n, deleted: false };
    const commit = this.nextCommit;
    this.nextCommit += 1_000n;
    const written: StoredEvent[] = events.map((event, i) => ({
      streamId: stream,
      id: event.id,
      revision: state.lastRevision + 1n + BigInt(i),
      type: event.type,
      created: new Date(),
      data: event.data,
      metadata: event.metadata,
      position: { commit, prepare: commit + BigInt(i) },
    }));
    this.log.push(...written);
    state.lastRevision += BigInt(events.length);
    state.deleted = false;
    this.streams.set(stream, state);
    for (const feed of this.feeds) {
      for (const event of written) if (!event.type.startsWith('$')) feed.emit('data', { event });
    }
    return state.lastRevision;
  }

  async appendToStream(
    streamName: string,
    events: EventData[],
    options: { streamState: AppendStreamState },
  ): Promise<{ nextExpectedRevision: bigint; position?: Position }> {
    this.calls.append += 1;
    await tick();
    const state = this.streams.get(streamName);
    const exists = state !== undefined;
    const expected = options.streamState;
    // Idempotency: the same ids written right after the expected revision → success, nothing written.
    if (exists && events.length > 0) {
      const first = this.log.find((e) => e.streamId === streamName && e.id === events[0]!.id);
      if (first) {
        const expectedBefore = first.revision - 1n;
        const sameIds = events.every((event, i) =>
          this.log.some(
            (e) =>
              e.streamId === streamName && e.id === event.id && e.revision === first.revision + BigInt(i),
          ),
        );
        const sameState =
          expected === 'any' ||
          (expected === 'no_stream' ? expectedBefore === -1n : expected === expectedBefore);
        if (sameIds && sameState) {
          const last = first.revision + BigInt(events.length) - 1n;
          return { nextExpectedRevision: last };
        }
      }
    }
    const actual: bigint | 'no_stream' = exists ? state.lastRevision : 'no_stream';
    const ok =
      expected === 'any' ||
      (expected === 'no_stream' && !exists) ||
      (expected === 'stream_exists' && exists) ||
      (typeof expected === 'bigint' && exists && state.lastRevision === expected);
    if (!ok) {
      throw new FakeError('wrong-expected-version', `wrong expected version for ${streamName}`, actual);
    }
    const last = this.write(
      streamName,
      events.map((event) => ({ id: event.id, type: event.type, data: event.data, metadata: event.metadata })),
    );
    return { nextExpectedRevision: last, position: this.log.at(-1)!.position };
  }

  readStream(
    streamName: string,
    options: { fromRevision?: ReadRevision; direction?: Direction; maxCount?: number | bigint },
  ): AsyncIterable<KurrentResolvedEvent> {
    this.calls.readStream += 1;
    const streams = this.streams;
    const log = this.log;
    return (async function* () {
      await tick();
      const state = streams.get(streamName);
      if (!state || state.deleted) throw new FakeError('stream-not-found', `${streamName} not found`);
      const backward = options.direction === 'backwards';
      let events = log.filter((e) => e.streamId === streamName && e.revision >= state.truncateBefore);
      const from = options.fromRevision ?? (backward ? 'end' : 'start');
      if (typeof from === 'bigint') {
        events = events.filter((e) => (backward ? e.revision <= from : e.revision >= from));
      }
      if (backward) events.reverse();
      const max = Number(options.maxCount ?? Number.MAX_SAFE_INTEGER);
      for (const event of events.slice(0, max)) yield { event };
    })();
  }

  readAll(options: {
    fromPosition?: ReadPosition;
    direction?: Direction;
    maxCount?: number | bigint;
  }): AsyncIterable<KurrentResolvedEvent> {
    this.calls.readAll += 1;
    const log = this.log;
    return (async function* () {
      await tick();
      const backward = options.direction === 'backwards';
      const from = options.fromPosition ?? (backward ? 'end' : 'start');
      let events = [...log];
      if (typeof from === 'object') {
        events = events.filter((e) =>
          backward ? comparePosition(e.position, from) <= 0 : comparePosition(e.position, from) >= 0,
        );
      }
      if (backward) events.reverse();
      const max = Number(options.maxCount ?? Number.MAX_SAFE_INTEGER);
      for (const event of events.slice(0, max)) yield { event, commitPosition: event.position.commit };
    })();
  }

  async deleteStream(streamName: string): Promise<unknown> {
    await tick();
    const state = this.streams.get(streamName);
    if (!state || state.deleted) throw new FakeError('stream-not-found', `${streamName} not found`);
    state.truncateBefore = state.lastRevision + 1n;
    state.deleted = true;
    this.write(`$$${streamName}`, [
      {
        id: crypto.randomUUID(),
        type: '$metadata',
        data: { $tb: Number(state.truncateBefore) },
        metadata: {},
      },
    ]);
    return {};
  }

  async getStreamMetadata(streamName: string): Promise<{ metadata?: { truncateBefore?: number } }> {
    this.calls.metadata += 1;
    await tick();
    const state = this.streams.get(streamName);
    if (!state || state.truncateBefore === 0n) return {};
    return { metadata: { truncateBefore: Number(state.truncateBefore) } };
  }

  subscribeToAll(options: { fromPosition?: ReadPosition }): KurrentLiveFeed {
    if (options.fromPosition !== 'end') throw new Error('the fake only supports subscribeToAll from END');
    const feed = new EventEmitter();
    this.feeds.add(feed);
    const live: KurrentLiveFeed = {
      on(
        event: 'data' | 'error',
        listener: ((event: KurrentResolvedEvent) => void) | ((error: Error) => void),
      ) {
        return feed.on(event, listener);
      },
      unsubscribe: async () => {
        this.feeds.delete(feed);
        feed.removeAllListeners();
      },
    };
    return live;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }
}
