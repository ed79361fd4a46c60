/**
 * The event store on KurrentDB (formerly EventStoreDB) through `@kurrent/kurrentdb-client`, selected by
 * EVENTSTORE_URL. Events live in KurrentDB; subscription checkpoints, leases and dead letters live in the
 * read-model SqlDatabase (the same SubscriptionHub as the SQL store, composed in openKurrentEventStore), so a
 * projection can still commit its checkpoint with its read-model writes.
 *
 * Mapping (docs/event-store.md "KurrentDB"):
 * - our version = number of events = KurrentDB revision + 1; expected 0 ↔ NO_STREAM.
 * - deleteStream is KurrentDB's soft delete: it sets $tb (truncate before) to 2^63 − 1 (SOFT_DELETED), and
 *   the first append afterwards sets it to that append's first revision: the stream continues from there.
 *   So version = revision + 1 − $tb, and reads skip revisions below $tb (they stay in $all until a
 *   scavenge).
 * - checkpoints = "<commit>:<prepare>" zero-padded (src/store/checkpoint.ts). readAll reads $all after the
 *   checkpoint (the read start is inclusive, so the checkpoint's own event is skipped) with a server-side
 *   filter, then applies ours exactly; a short page moves `next` to the head read before it, so the
 *   checkpoint moves past what the filters dropped.
 * - live wake-up: while anyone listens to onNewEvents, one subscribeToAll (system events excluded) per log
 *   announces every new event, from any process; polling remains the fallback.
 *
 * Tested through the real client on the wire (test/contract/kurrentdb.test.ts): against a server when
 * EVENTSTORE_URL is set, else against the gRPC stand-in in test/support/kurrentdb-standin. The client reads
 * through its Rust bridge, which gives `created` in whole seconds, so createdAt (and `until`) has a
 * one-second resolution on this adapter.
 */
import { randomUUID } from 'node:crypto';
import {
  ANY,
  BACKWARDS,
  END,
  FORWARDS,
  KurrentDBClient,
  NO_STREAM,
  START as KURRENT_START,
  eventTypeFilter,
  excludeSystemEvents,
  jsonEvent,
  streamNameFilter,
  type AppendStreamState,
  type Direction,
  type EventData,
  type Filter,
  type Position,
  type ReadPosition,
  type ReadRevision,
} from '@kurrent/kurrentdb-client';
import {
  START,
  type AppendResult,
  type Checkpoint,
  type EventFilter,
  type EventLog,
  type EventStore,
  type ExpectedVersion,
  type NewEvent,
  type ReadAllOptions,
  type ReadAllResult,
  type ReadStreamOptions,
  type RecordedEvent,
} from './port.ts';
import type { SqlDatabase } from './sql.ts';
import { DuplicateEventIdError, WrongExpectedVersionError } from './errors.ts';
import { compareCheckpoints, decodeCheckpoint, encodeCheckpoint } from './checkpoint.ts';
import { composeEventStore, createConsumers } from './event-store.ts';
import { eventMatches } from './filter.ts';
import { AppendAnnouncer } from './append-announcer.ts';

/** An event as the client returns it (the fields we read). */
export interface KurrentRecordedEvent {
  readonly streamId: string;
  readonly id: string;
  readonly revision: bigint;
  readonly type: string;
  readonly created: Date;
  readonly data: unknown;
  readonly metadata: unknown;
  readonly position?: Position;
}

export interface KurrentResolvedEvent {
  readonly event?: KurrentRecordedEvent;
  readonly commitPosition?: bigint;
}

export interface KurrentLiveFeed {
  on(event: 'data', listener: (event: KurrentResolvedEvent) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  unsubscribe(): Promise<void>;
}

/** The client calls this adapter makes: the real KurrentDBClient, or the fake in the tests. */
export interface KurrentClientPort {
  appendToStream(
    streamName: string,
    events: EventData[],
    options: { streamState: AppendStreamState },
  ): Promise<{ nextExpectedRevision: bigint; position?: Position }>;
  readStream(
    streamName: string,
    options: { fromRevision?: ReadRevision; direction?: Direction; maxCount?: number | bigint },
  ): AsyncIterable<KurrentResolvedEvent>;
  readAll(options: {
    fromPosition?: ReadPosition;
    direction?: Direction;
    maxCount?: number | bigint;
    filter?: Filter;
  }): AsyncIterable<KurrentResolvedEvent>;
  deleteStream(streamName: string): Promise<unknown>;
  tombstoneStream(streamName: string): Promise<unknown>;
  getStreamMetadata(streamName: string): Promise<{ metadata?: { truncateBefore?: number | string } }>;
  subscribeToAll(options: { fromPosition?: ReadPosition; filter?: Filter }): KurrentLiveFeed;
  dispose(): Promise<void>;
}

export interface KurrentEventStoreOptions {
  /** Where subscriptions keep checkpoints, leases and dead letters (the read model; migrated already). */
  readonly db: SqlDatabase;
  readonly ownerId?: string | undefined;
  /** How long another process's deleteStream may go unnoticed by this one's reads. Default 5 s. */
  readonly truncationCacheMs?: number;
  /**
   * Streams whose delete is a tombstone (KurrentDB's hard delete) instead of the soft delete: the name is
   * retired for good, so no late append can bring the stream back. Only for streams whose names are
   * never reused (an instance id); a name or token reservation must stay reusable. Default none.
   */
  readonly tombstonePrefixes?: readonly string[];
}

const DEFAULT_READ_LIMIT = 1000;

interface KurrentError {
  type?: string;
  actualState?: bigint | string;
}

function kurrentErrorType(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null ? (error as KurrentError).type : undefined;
}

function isSystem(event: KurrentRecordedEvent): boolean {
  return event.type.startsWith('$') || event.streamId.startsWith('$');
}

function asRecord(value: unknown): Record<string, unknown> {
  if (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  ) {
    return value as Record<string, unknown>;
  }
  return {};
}

function matches(
  event: KurrentRecordedEvent,
  filter: EventFilter | undefined,
  until: Date | undefined,
): boolean {
  if (!eventMatches(filter, { stream: event.streamId, type: event.type })) return false;
  return !until || event.created.getTime() <= until.getTime();
}

/**
 * The narrowest filter the server can apply to a readAll page (one expression: exact streams as stream-name
 * prefixes, else stream prefixes, else event type prefixes, else no system events); `matches` still applies
 * ours exactly afterwards.
 */
function serverFilterOf(filter: EventFilter | undefined): Filter {
  if (filter?.streams && filter.streams.length > 0) {
    return streamNameFilter({ prefixes: [...filter.streams] });
  }
  if (filter?.streamPrefixes && filter.streamPrefixes.length > 0) {
    return streamNameFilter({ prefixes: [...filter.streamPrefixes] });
  }
  if (filter?.eventTypes && filter.eventTypes.length > 0) {
    return eventTypeFilter({ prefixes: [...filter.eventTypes] });
  }
  return excludeSystemEvents();
}

function positionOf(resolved: KurrentResolvedEvent, event: KurrentRecordedEvent): Checkpoint {
  if (event.position) return encodeCheckpoint(event.position.commit, event.position.prepare);
  if (resolved.commitPosition !== undefined)
    return encodeCheckpoint(resolved.commitPosition, resolved.commitPosition);
  throw new Error(`KurrentDB returned event ${event.id} without a position`);
}

/**
 * `$tb` of a soft-deleted stream that has not been written since: the server deletes by writing
 * `$tb = 2^63 − 1` and, on the first append afterwards, rewrites it to the first new revision.
 */
export const SOFT_DELETED = 9223372036854775807n;

/** Our stream version (count of events since the last delete) ↔ KurrentDB revision. */
export const versionMapping = {
  toStreamState(expected: ExpectedVersion, truncateBefore: bigint): AppendStreamState {
    if (expected === 'any') return ANY;
    const count = expected === 'no_stream' ? 0 : expected;
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(
        `expected version must be a whole number ≥ 0, 'no_stream' or 'any'; got ${String(expected)}`,
      );
    }
    if (count === 0 && (truncateBefore === 0n || truncateBefore === SOFT_DELETED)) return NO_STREAM;
    return BigInt(count) - 1n + truncateBefore;
  },
  toVersion(revision: bigint, truncateBefore: bigint): number {
    return Number(revision + 1n - truncateBefore);
  },
  toRevision(version: number, truncateBefore: bigint): bigint {
    return BigInt(version) - 1n + truncateBefore;
  },
};

/** The log on KurrentDB and its consumers (subscription tables in the read-model database). */
export async function openKurrentEventStore(
  options: KurrentEventStoreOptions & { url: string },
): Promise<EventStore> {
  const client = KurrentDBClient.connectionString(options.url);
  return createKurrentEventStore(client, options);
}

export function createKurrentEventStore(
  client: KurrentClientPort,
  options: KurrentEventStoreOptions,
): EventStore {
  const log = createKurrentEventLog(client, options);
  return composeEventStore(log, createConsumers(log, options.db, options.ownerId));
}

/** The log on KurrentDB at `url` (storage only). */
export function openKurrentEventLog(
  url: string,
  options: Omit<KurrentEventStoreOptions, 'db' | 'ownerId'> = {},
): EventLog {
  return createKurrentEventLog(KurrentDBClient.connectionString(url), options);
}

/** The log on KurrentDB (storage only). */
export function createKurrentEventLog(
  client: KurrentClientPort,
  options: Omit<KurrentEventStoreOptions, 'db' | 'ownerId'>,
): EventLog {
  return new KurrentEventLog(client, options);
}

class KurrentEventLog implements EventLog {
  readonly kind = 'kurrentdb' as const;
  private readonly announcer = new AppendAnnouncer();
  /** $tb per stream, with the time it was read. */
  private readonly truncation = new Map<string, { value: bigint; at: number }>();
  private readonly truncationCacheMs: number;
  private readonly tombstonePrefixes: readonly string[];
  private live: KurrentLiveFeed | undefined;
  private liveRetry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly client: KurrentClientPort,
    options: Omit<KurrentEventStoreOptions, 'db' | 'ownerId'>,
  ) {
    this.truncationCacheMs = options.truncationCacheMs ?? 5_000;
    this.tombstonePrefixes = options.tombstonePrefixes ?? [];
  }

  /**
   * $tb of the stream: 0n, a revision, or SOFT_DELETED. SOFT_DELETED is never cached: the next append (from
   * any process) replaces it, and a stale one would hide the recreated stream.
   */
  private async truncateBefore(stream: string, fresh = false): Promise<bigint> {
    const cached = this.truncation.get(stream);
    if (!fresh && cached && Date.now() - cached.at < this.truncationCacheMs) return cached.value;
    let value = 0n;
    try {
      const { metadata } = await this.client.getStreamMetadata(stream);
      const tb = metadata?.truncateBefore;
      // 2^63 − 1 arrives as a JSON number, so as a double above the safe range.
      if (typeof tb === 'number' && tb > Number.MAX_SAFE_INTEGER) value = SOFT_DELETED;
      else if (typeof tb === 'number' && Number.isSafeInteger(tb) && tb > 0) value = BigInt(tb);
    } catch (error) {
      // A tombstoned stream has no metadata either; its reads answer nothing (readStream).
      const type = kurrentErrorType(error);
      if (type !== 'stream-not-found' && type !== 'stream-deleted') throw error;
    }
    if (value === SOFT_DELETED) this.truncation.delete(stream);
    else this.truncation.set(stream, { value, at: Date.now() });
    return value;
  }

  /** The stream state to send; a soft-deleted stream not written since has version 0, so only 0 or 'any' fit. */
  private streamStateFor(stream: string, expected: ExpectedVersion, tb: bigint): AppendStreamState {
    if (tb === SOFT_DELETED && expected !== 'any' && expected !== 'no_stream' && expected !== 0) {
      // Its last revision would be accepted as a recreation: refuse here instead.
      throw new WrongExpectedVersionError(stream, expected, 0);
    }
    return versionMapping.toStreamState(expected, tb);
  }

  private toRecorded(resolved: KurrentResolvedEvent, event: KurrentRecordedEvent, tb: bigint): RecordedEvent {
    return {
      id: event.id,
      stream: event.streamId,
      streamPosition: versionMapping.toVersion(event.revision, tb),
      position: positionOf(resolved, event),
      type: event.type,
      data: asRecord(event.data),
      metadata: asRecord(event.metadata),
      createdAt: new Date(event.created),
    };
  }

  async append(
    stream: string,
    events: readonly NewEvent[],
    options: { expectedVersion?: ExpectedVersion } = {},
  ): Promise<AppendResult> {
    if (events.length === 0) throw new RangeError(`append to ${stream}: no events`);
    const expected = options.expectedVersion ?? 'any';
    const data = events.map((event) =>
      jsonEvent({
        id: event.id ?? randomUUID(),
        type: event.type,
        data: { ...event.data },
        metadata: { ...(event.metadata ?? {}) },
      }),
    );
    let tb = await this.truncateBefore(stream);
    let streamState = this.streamStateFor(stream, expected, tb);
    let written: { nextExpectedRevision: bigint } | undefined;
    for (let attempt = 0; written === undefined; attempt += 1) {
      try {
        written = await this.client.appendToStream(stream, data, { streamState });
      } catch (error) {
        if (kurrentErrorType(error) !== 'wrong-expected-version') throw error;
        const actualState = (error as KurrentError).actualState;
        if (attempt === 0) {
          // A stale $tb (another process deleted the stream) maps versions wrongly: refresh it, retry once.
          const freshTb = await this.truncateBefore(stream, true);
          if (freshTb !== tb) {
            tb = freshTb;
            streamState = this.streamStateFor(stream, expected, tb);
            continue;
          }
          // A server that wants NO_STREAM for a soft-deleted stream not written since: retry once with it.
          if (
            actualState === NO_STREAM &&
            typeof streamState === 'bigint' &&
            versionMapping.toVersion(streamState, tb) === 0
          ) {
            streamState = NO_STREAM;
            continue;
          }
        }
        const actual =
          typeof actualState === 'bigint' ? Math.max(0, versionMapping.toVersion(actualState, tb)) : 0;
        throw new WrongExpectedVersionError(stream, expected, actual);
      }
    }
    const last = written.nextExpectedRevision;
    const first = last - BigInt(data.length) + 1n;
    if (tb === SOFT_DELETED) {
      // This append recreated the stream (or followed one that did): the server has rewritten $tb.
      tb = await this.truncateBefore(stream, true);
      if (tb === SOFT_DELETED) tb = first;
    }
    const recorded: RecordedEvent[] = [];
    for await (const resolved of this.client.readStream(stream, {
      fromRevision: first,
      direction: FORWARDS,
      maxCount: data.length,
    })) {
      if (resolved.event) recorded.push(this.toRecorded(resolved, resolved.event, tb));
    }
    // KurrentDB deduplicates by event id instead of rejecting: it reports success without writing.
    if (recorded.length !== data.length || recorded.some((event, i) => event.id !== data[i]!.id)) {
      throw new DuplicateEventIdError(stream);
    }
    const lastEvent = recorded.at(-1)!;
    const result: AppendResult = {
      nextVersion: lastEvent.streamPosition,
      position: lastEvent.position,
      events: recorded,
    };
    this.announcer.appended(result, stream);
    return result;
  }

  async readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    const tb = await this.truncateBefore(stream);
    const fromVersion = Math.max(1, options.fromVersion ?? 1);
    const toVersion = options.toVersion;
    const backward = options.direction === 'backward';
    const fromRevision: ReadRevision = backward
      ? toVersion !== undefined
        ? versionMapping.toRevision(toVersion, tb)
        : END
      : versionMapping.toRevision(fromVersion, tb);
    if (backward && typeof fromRevision === 'bigint' && fromRevision < tb) return [];
    const out: RecordedEvent[] = [];
    try {
      for await (const resolved of this.client.readStream(stream, {
        fromRevision,
        direction: backward ? BACKWARDS : FORWARDS,
      })) {
        const event = resolved.event;
        if (!event || event.revision < tb) {
          if (backward) break;
          continue;
        }
        const recorded = this.toRecorded(resolved, event, tb);
        if (
          backward
            ? recorded.streamPosition < fromVersion
            : toVersion !== undefined && recorded.streamPosition > toVersion
        )
          break;
        if (options.until && recorded.createdAt.getTime() > options.until.getTime()) continue;
        out.push(recorded);
        if (options.limit !== undefined && out.length >= options.limit) break;
      }
    } catch (error) {
      const type = kurrentErrorType(error);
      if (type === 'stream-not-found' || type === 'stream-deleted') return [];
      throw error;
    }
    return out;
  }

  async readAll(options: ReadAllOptions = {}): Promise<ReadAllResult> {
    const after = options.after ?? START;
    const limit = options.limit ?? DEFAULT_READ_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError(`readAll limit must be ≥ 1; got ${limit}`);
    const from = decodeCheckpoint(after);
    const fromPosition: ReadPosition = from ? { commit: from.high, prepare: from.low } : KURRENT_START;
    const scanned: Array<{
      resolved: KurrentResolvedEvent;
      event: KurrentRecordedEvent;
      position: Checkpoint;
    }> = [];
    // The server filters, so a page skips what the filter drops (a client-side scan cost one round trip
    // per `limit` events of all of $all). The head is read first: when the page comes back short, the
    // server has scanned up to it, so `next` can move there, past the events it dropped.
    const head = await this.headPosition();
    // +1: the start position is inclusive, so the event at `after` itself may come first.
    for await (const resolved of this.client.readAll({
      fromPosition,
      direction: FORWARDS,
      maxCount: limit + 1,
      filter: serverFilterOf(options.filter),
    })) {
      const event = resolved.event;
      if (!event) continue;
      const position = positionOf(resolved, event);
      if (compareCheckpoints(position, after) <= 0) continue;
      scanned.push({ resolved, event, position });
      if (scanned.length >= limit) break;
    }
    const events: RecordedEvent[] = [];
    // Per page: SOFT_DELETED is not cached, and a deleted stream's events can fill a page.
    const tbOf = new Map<string, Promise<bigint>>();
    for (const { resolved, event } of scanned) {
      if (isSystem(event) || !matches(event, options.filter, options.until)) continue;
      let pending = tbOf.get(event.streamId);
      if (!pending) tbOf.set(event.streamId, (pending = this.truncateBefore(event.streamId)));
      const tb = await pending;
      if (event.revision < tb) continue; // deleted (soft-deleted events stay in $all until a scavenge)
      events.push(this.toRecorded(resolved, event, tb));
    }
    const caughtUp = scanned.length < limit;
    let next = scanned.at(-1)?.position ?? after;
    if (caughtUp && compareCheckpoints(head, next) > 0) next = head;
    return { events, next, caughtUp };
  }

  async streamVersion(stream: string): Promise<number> {
    const [last] = await this.readStream(stream, { direction: 'backward', limit: 1 });
    return last?.streamPosition ?? 0;
  }

  async deleteStream(stream: string): Promise<void> {
    const tombstone = this.tombstonePrefixes.some((prefix) => stream.startsWith(prefix));
    try {
      if (tombstone) await this.client.tombstoneStream(stream);
      else await this.client.deleteStream(stream);
    } catch (error) {
      const type = kurrentErrorType(error);
      if (type !== 'stream-not-found' && type !== 'stream-deleted') throw error;
    }
    this.truncation.delete(stream);
  }

  /** One server push per log, while anyone listens: any new event in $all (from any process) is announced. */
  private startLiveFeed(): void {
    if (this.live || this.closed || !this.announcer.hasNewEventsListeners) return;
    try {
      const live = this.client.subscribeToAll({ fromPosition: END, filter: excludeSystemEvents() });
      live.on('data', () => this.announcer.announce());
      live.on('error', () => {
        if (this.live === live) this.live = undefined;
        if (this.closed) return;
        this.liveRetry = setTimeout(() => this.startLiveFeed(), 1_000);
        this.liveRetry.unref();
      });
      this.live = live;
    } catch {
      // polling still delivers; the next listener tries again
    }
  }

  compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
    return compareCheckpoints(a, b);
  }

  async headPosition(): Promise<Checkpoint> {
    for await (const resolved of this.client.readAll({
      fromPosition: END,
      direction: BACKWARDS,
      maxCount: 1,
    })) {
      if (resolved.event) return positionOf(resolved, resolved.event);
    }
    return START;
  }

  onAppended(listener: (result: AppendResult, stream: string) => void): () => void {
    return this.announcer.onAppended(listener);
  }

  onNewEvents(listener: (position?: Checkpoint) => void): () => void {
    if (this.closed) throw new Error('the event store is closed');
    const off = this.announcer.onNewEvents(listener);
    this.startLiveFeed();
    return off;
  }

  async ping(): Promise<void> {
    await this.headPosition();
  }

  /** Stops the live feed and disposes the client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.liveRetry);
    await this.live?.unsubscribe().catch(() => undefined);
    this.live = undefined;
    this.announcer.clear();
    await this.client.dispose();
  }
}
