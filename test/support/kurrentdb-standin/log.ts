/**
 * The stand-in's transaction log: every event of every stream in one ordered list ($all), with the stream
 * rules of a KurrentDB/EventStoreDB node that the gRPC Streams service exposes:
 *
 * - revisions are 0-based and dense per stream; an append checks the expected state (any, no_stream,
 *   stream_exists, an exact revision) and is atomic: all its events or none, contiguous in $all;
 * - $all positions are {commit, prepare} log offsets: every event of one append shares the append's commit
 *   position (the offset where the write starts) and has its own prepare position (its record's offset);
 *   offsets grow by a record size, so positions are monotonic but never a count of events;
 * - a retried append (the same event ids at the same expected state) succeeds without writing again;
 * - soft delete writes `$tb = 2^63 - 1` to the metadata stream `$$<stream>`: the stream reads as not
 *   found; the first append afterwards (any, no_stream, or the last revision) recreates it, writing
 *   `$tb = <first new revision>` to the metadata stream first; revisions continue where they were;
 * - a tombstone (hard delete) writes a `$streamDeleted` record; the stream is gone for good and any later
 *   read, append, delete or metadata read fails with "stream deleted";
 * - soft-deleted events stay in $all (no scavenge here), as on a server between scavenges.
 *
 * With a `file`, every append is also written to an append-only JSON-lines file before it is acknowledged
 * (one write call per append), and replayed when the log is opened again, so the stand-in survives a
 * SIGKILL: an append is either wholly in the file or, if the process died mid-write, dropped on replay.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

/** `$tb` of a soft-deleted stream that has not been written since (EventNumber.DeletedStream). */
export const DELETED_STREAM = 9223372036854775807n;
/** The revision KurrentDB gives a tombstone record. */
const TOMBSTONE_REVISION = 9223372036854775807n;
/** .NET ticks (100 ns) per millisecond: `created` goes over the wire as ticks since the Unix epoch. */
const TICKS_PER_MS = 10_000n;

export type ExpectedState =
  | { readonly kind: 'any' }
  | { readonly kind: 'no_stream' }
  | { readonly kind: 'stream_exists' }
  | { readonly kind: 'revision'; readonly revision: bigint };

export interface LogPosition {
  readonly commit: bigint;
  readonly prepare: bigint;
}

export interface ProposedEvent {
  readonly id: string;
  readonly type: string;
  readonly contentType: string;
  readonly data: Buffer;
  readonly metadata: Buffer;
}

export interface LoggedEvent extends ProposedEvent {
  readonly stream: string;
  readonly revision: bigint;
  /** Ticks (100 ns) since the Unix epoch. */
  readonly created: bigint;
  readonly position: LogPosition;
}

/** The stream was tombstoned (hard-deleted). */
export class StreamDeletedFault extends Error {
  constructor(readonly stream: string) {
    super(`Event stream '${stream}' is deleted.`);
  }
}

/** The expected state did not hold. `current` is the last revision, undefined when there is no stream. */
export class WrongExpectedVersionFault extends Error {
  constructor(
    readonly stream: string,
    readonly expected: ExpectedState,
    readonly current: bigint | undefined,
  ) {
    super(
      `Append failed due to WrongExpectedVersion. Stream: ${stream}, Expected version: ${describe(expected)}, ` +
        `Actual version: ${current === undefined ? 'no stream' : String(current)}`,
    );
  }
}

function describe(expected: ExpectedState): string {
  return expected.kind === 'revision' ? String(expected.revision) : expected.kind;
}

export interface AppendOutcome {
  /** The stream's last revision after the append (the retried append's last revision when deduplicated). */
  readonly revision: bigint;
  /** Undefined for an empty append. */
  readonly position: LogPosition | undefined;
  /** True when the append was a retry of one already written: nothing was written. */
  readonly deduplicated: boolean;
}

export interface ReadStreamResult {
  readonly found: boolean;
  readonly events: readonly LoggedEvent[];
}

interface WritePart {
  readonly stream: string;
  readonly events: readonly ProposedEvent[];
  /** Fixed revisions (the tombstone's); by default the stream's next ones. */
  readonly revisions?: readonly bigint[];
}

interface StreamRecord {
  /** Every event ever written, index = revision (truncated ones included: reads skip them). */
  readonly events: LoggedEvent[];
  tombstoned: boolean;
}

export function comparePositions(a: LogPosition, b: LogPosition): number {
  if (a.commit !== b.commit) return a.commit < b.commit ? -1 : 1;
  if (a.prepare !== b.prepare) return a.prepare < b.prepare ? -1 : 1;
  return 0;
}

export function metastreamOf(stream: string): string {
  return `$$${stream}`;
}

interface FileLine {
  readonly w: number;
  readonly n: number;
  readonly s: string;
  readonly r: string;
  readonly i: string;
  readonly t: string;
  readonly ct: string;
  readonly d: string;
  readonly m: string;
  readonly c: string;
  readonly pc: string;
  readonly pp: string;
}

export class StandInLog {
  /** $all, in position order. */
  readonly all: LoggedEvent[] = [];
  private readonly streams = new Map<string, StreamRecord>();
  private readonly listeners = new Set<(events: readonly LoggedEvent[]) => void>();
  /** The offset the next record is written at. */
  private nextOffset = 0n;
  private writes = 0;

  constructor(private readonly file?: string) {
    if (file && existsSync(file)) this.replay(file);
    if (this.all.length === 0) {
      // A fresh node writes system records before anything else; readers must skip them.
      this.write([
        { stream: '$epoch-information', events: [jsonRecord('$epoch-information', { epochNumber: 0 })] },
      ]);
    }
  }

  private replay(file: string): void {
    const lines = readFileSync(file, 'utf8').split('\n');
    let pending: FileLine[] = [];
    for (const text of lines) {
      if (!text) continue;
      let line: FileLine;
      try {
        line = JSON.parse(text) as FileLine;
      } catch {
        break; // a line cut short by a kill: the append it belongs to was never acknowledged
      }
      pending.push(line);
      if (pending.length === line.n) {
        this.apply(pending.map(fromLine));
        this.writes = line.w;
        pending = [];
      }
    }
  }

  /** Records events in memory (and nowhere else); `write` persists first. */
  private apply(events: readonly LoggedEvent[]): void {
    for (const event of events) {
      const record = this.record(event.stream);
      if (event.revision === TOMBSTONE_REVISION) record.tombstoned = true;
      else record.events.push(event);
      this.all.push(event);
      const end = event.position.prepare + recordSize(event);
      if (end > this.nextOffset) this.nextOffset = end;
    }
    for (const listener of this.listeners) listener(events);
  }

  private record(stream: string): StreamRecord {
    let record = this.streams.get(stream);
    if (!record) {
      record = { events: [], tombstoned: false };
      this.streams.set(stream, record);
    }
    return record;
  }

  /**
   * Assigns revisions and positions, persists, then applies: one atomic step for every observer, and one
   * write to the file (the metadata that recreates a deleted stream goes with the events that do).
   */
  private write(parts: ReadonlyArray<WritePart>): LoggedEvent[][] {
    let offset = this.nextOffset;
    const created = BigInt(Date.now()) * TICKS_PER_MS;
    const written = parts.map((part) => {
      let revision = BigInt(this.streams.get(part.stream)?.events.length ?? 0);
      const commit = offset;
      return part.events.map((event, i): LoggedEvent => {
        const logged: LoggedEvent = {
          ...event,
          stream: part.stream,
          revision: part.revisions?.[i] ?? revision++,
          created,
          position: { commit, prepare: offset },
        };
        offset += recordSize(logged);
        return logged;
      });
    });
    const events = written.flat();
    if (this.file) {
      this.writes += 1;
      const w = this.writes;
      appendFileSync(
        this.file,
        events.map((event) => JSON.stringify(toLine(event, w, events.length)) + '\n').join(''),
      );
    }
    this.apply(events);
    return written;
  }

  onWritten(listener: (events: readonly LoggedEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The last revision, or undefined when the stream has never been written. */
  private lastRevision(stream: string): bigint | undefined {
    const length = this.streams.get(stream)?.events.length ?? 0;
    return length === 0 ? undefined : BigInt(length - 1);
  }

  /** `$tb` from the newest `$metadata` record of the metadata stream; 0 when none. */
  truncateBefore(stream: string): bigint {
    const meta = this.streams.get(metastreamOf(stream))?.events.at(-1);
    if (!meta) return 0n;
    const raw = /"\$tb"\s*:\s*(\d+)/.exec(meta.data.toString('utf8'))?.[1];
    return raw === undefined ? 0n : BigInt(raw);
  }

  private softDeleted(stream: string): boolean {
    return this.truncateBefore(stream) === DELETED_STREAM;
  }

  isTombstoned(stream: string): boolean {
    return this.streams.get(stream)?.tombstoned === true;
  }

  append(stream: string, expected: ExpectedState, proposed: readonly ProposedEvent[]): AppendOutcome {
    if (this.isTombstoned(stream)) throw new StreamDeletedFault(stream);
    const record = this.streams.get(stream);
    const last = this.lastRevision(stream);
    const softDeleted = this.softDeleted(stream);
    const retried = this.retried(stream, expected, proposed);
    if (retried) return retried;
    // A soft-deleted stream reads as absent: no_stream and any recreate it, and so does its last revision.
    const exists = last !== undefined && !softDeleted;
    const ok =
      expected.kind === 'any' ||
      (expected.kind === 'no_stream' && !exists) ||
      (expected.kind === 'stream_exists' && exists) ||
      (expected.kind === 'revision' && last !== undefined && expected.revision === last);
    if (!ok) throw new WrongExpectedVersionFault(stream, expected, exists ? last : undefined);
    if (proposed.length === 0) {
      const tail = record?.events.at(-1);
      return { revision: last ?? -1n, position: tail?.position, deduplicated: false };
    }
    const parts: WritePart[] = [];
    if (softDeleted) {
      parts.push({
        stream: metastreamOf(stream),
        events: [jsonRecord('$metadata', { $tb: Number((last ?? -1n) + 1n) })],
      });
    }
    parts.push({ stream, events: proposed });
    const written = this.write(parts).at(-1)!;
    const tail = written.at(-1)!;
    return { revision: tail.revision, position: tail.position, deduplicated: false };
  }

  /**
   * KurrentDB's idempotency: the same ids written at the revisions the expected state names (or, with
   * `any`, wherever the first id is found in the stream) mean the append was already made.
   */
  private retried(
    stream: string,
    expected: ExpectedState,
    proposed: readonly ProposedEvent[],
  ): AppendOutcome | undefined {
    const events = this.streams.get(stream)?.events ?? [];
    if (proposed.length === 0 || events.length === 0) return undefined;
    let first: number;
    if (expected.kind === 'any') first = events.findIndex((event) => event.id === proposed[0]!.id);
    else if (expected.kind === 'no_stream') first = 0;
    else if (expected.kind === 'revision') first = Number(expected.revision) + 1;
    else return undefined;
    if (first < 0 || first + proposed.length > events.length) return undefined;
    const same = proposed.every((event, i) => events[first + i]!.id === event.id);
    if (!same) return undefined;
    const tail = events[first + proposed.length - 1]!;
    return { revision: tail.revision, position: tail.position, deduplicated: true };
  }

  /** Soft delete: checks the expected state, then writes `$tb = DELETED_STREAM` to the metadata stream. */
  softDelete(stream: string, expected: ExpectedState): LogPosition {
    this.checkDelete(stream, expected);
    const meta = this.write([
      { stream: metastreamOf(stream), events: [jsonRecord('$metadata', { $tb: DELETED_STREAM })] },
    ])[0]![0]!;
    return meta.position;
  }

  /** Hard delete: a `$streamDeleted` record; the stream can never be used again. */
  tombstone(stream: string, expected: ExpectedState): LogPosition {
    this.checkDelete(stream, expected);
    const record = this.write([
      { stream, events: [jsonRecord('$streamDeleted', {})], revisions: [TOMBSTONE_REVISION] },
    ])[0]![0]!;
    return record.position;
  }

  private checkDelete(stream: string, expected: ExpectedState): void {
    if (this.isTombstoned(stream)) throw new StreamDeletedFault(stream);
    const last = this.lastRevision(stream);
    const exists = last !== undefined && !this.softDeleted(stream);
    const ok =
      expected.kind === 'any' ||
      (expected.kind === 'no_stream' && !exists) ||
      (expected.kind === 'stream_exists' && exists) ||
      (expected.kind === 'revision' && exists && expected.revision === last);
    if (!ok) throw new WrongExpectedVersionFault(stream, expected, exists ? last : undefined);
  }

  /**
   * The stream's readable events (revision ≥ $tb), oldest first. Not found: never written, or
   * soft-deleted and not written since. Throws StreamDeletedFault for a tombstoned stream.
   */
  readStream(stream: string): ReadStreamResult {
    if (this.isTombstoned(stream)) throw new StreamDeletedFault(stream);
    const events = this.streams.get(stream)?.events ?? [];
    if (events.length === 0) return { found: false, events: [] };
    if (stream.startsWith('$$')) return { found: true, events };
    const tb = this.truncateBefore(stream);
    if (tb === DELETED_STREAM) return { found: false, events: [] };
    return { found: true, events: events.filter((event) => event.revision >= tb) };
  }

  /** The position just past the last record (where END points). */
  head(): LogPosition | undefined {
    return this.all.at(-1)?.position;
  }
}

function recordSize(event: ProposedEvent & { stream: string }): bigint {
  // Roughly a prepare record: a fixed header, the names and the payloads.
  return BigInt(88 + event.stream.length + event.type.length + event.data.length + event.metadata.length);
}

function jsonRecord(type: string, data: Record<string, unknown>): ProposedEvent {
  // $tb may exceed 2^53: write it as a JSON integer without going through a double.
  const text = JSON.stringify(data, (_key, value: unknown) =>
    typeof value === 'bigint' ? `__big${value}` : value,
  ).replace(/"__big(\d+)"/g, '$1');
  return {
    id: randomUUID(),
    type,
    contentType: 'application/json',
    data: Buffer.from(text, 'utf8'),
    metadata: Buffer.alloc(0),
  };
}

function toLine(event: LoggedEvent, w: number, n: number): FileLine {
  return {
    w,
    n,
    s: event.stream,
    r: String(event.revision),
    i: event.id,
    t: event.type,
    ct: event.contentType,
    d: event.data.toString('base64'),
    m: event.metadata.toString('base64'),
    c: String(event.created),
    pc: String(event.position.commit),
    pp: String(event.position.prepare),
  };
}

function fromLine(line: FileLine): LoggedEvent {
  return {
    stream: line.s,
    revision: BigInt(line.r),
    id: line.i,
    type: line.t,
    contentType: line.ct,
    data: Buffer.from(line.d, 'base64'),
    metadata: Buffer.from(line.m, 'base64'),
    created: BigInt(line.c),
    position: { commit: BigInt(line.pc), prepare: BigInt(line.pp) },
  };
}
