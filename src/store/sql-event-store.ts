/**
 * The event store on SQL: PostgreSQL (embedded or external; the schema and SQL are in
 * src/store/migrations). Algorithms and the reasons for them: docs/event-store.md.
 *
 * - append: one call of es_append (one statement, its own short transaction). Optimistic concurrency is a
 *   conditional UPDATE of the stream row; 'any' is an atomic upsert-increment, so it never conflicts.
 * - readAll: gap-safe. Rows are read in (transaction_id, global_position) order and only when
 *   transaction_id < pg_snapshot_xmin(pg_current_snapshot()), i.e. when no transaction that could still
 *   commit a row sorting before them is running. Checkpoints encode the (transaction_id, position) pair.
 * - announcements: onAppended after each append of this process; onNewEvents also on NOTIFY when enabled.
 * - consumers (subscriptions, checkpoints, dead letters) are not here: src/store/subscriptions/hub.ts serves
 *   every adapter; createSqlEventStore composes both.
 */
import { randomUUID } from 'node:crypto';
import {
  START,
  type AppendFencing,
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

export type { AppendFencing, StreamFence } from './port.ts';
import type { SqlDatabase } from './sql.ts';
import {
  DuplicateEventIdError,
  FENCED_SQLSTATE,
  FencedWriteError,
  WrongExpectedVersionError,
} from './errors.ts';
import { compareCheckpoints, decodeCheckpoint, encodeCheckpoint, maxCheckpoint } from './checkpoint.ts';
import { int8ToNumber } from './sql/int8.ts';
import { composeEventStore, createConsumers } from './event-store.ts';
import { AppendAnnouncer } from './append-announcer.ts';

export interface SqlEventStoreOptions {
  /** Whether the database is the embedded PostgreSQL (shown by /health). Default 'postgres'. */
  readonly kind?: 'embedded-postgres' | 'postgres';
  /** Names this process in subscription leases. Default `<hostname>:<pid>`. */
  readonly ownerId?: string;
  /**
   * NOTIFY on every append and LISTEN for it: wakes subscribers in other processes on the same PostgreSQL
   * at once instead of at their next poll. Costs write throughput (a global lock at commit); off by default.
   */
  readonly notify?: boolean;
  /**
   * Cluster mode: the fencing token for a stream (undefined: not fenced). A fenced append runs through
   * zw_fenced_append (src/cluster/migrations), which checks the lease in the append's own transaction
   * and refuses with FencedWriteError when this node does not hold it.
   */
  readonly fence?: AppendFencing;
}

const NOTIFY_CHANNEL = 'es_events';
const DEFAULT_READ_LIMIT = 1000;

const EVENT_COLUMNS = `e.transaction_id::text AS transaction_id, e.global_position::text AS global_position,
  e.stream_id, e.stream_position::text AS stream_position, e.event_id::text AS event_id, e.event_type, e.data,
  e.metadata, e.created_at`;

interface EventRow {
  transaction_id: string;
  global_position: string;
  stream_id: string;
  stream_position: string;
  event_id: string;
  event_type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  created_at: Date | string;
}

function toRecorded(row: EventRow): RecordedEvent {
  return {
    id: row.event_id,
    stream: row.stream_id,
    streamPosition: int8ToNumber(row.stream_position),
    position: encodeCheckpoint(row.transaction_id, row.global_position),
    type: row.event_type,
    data: row.data,
    metadata: row.metadata,
    createdAt: new Date(row.created_at),
  };
}

/** The category of a stream id: the text before the first '-' ("instance-<uuid>" → "instance"). */
export function streamCategory(stream: string): string {
  const dash = stream.indexOf('-');
  return dash > 0 ? stream.slice(0, dash) : stream;
}

function expectedToSql(expected: ExpectedVersion): number | null {
  if (expected === 'any') return null;
  if (expected === 'no_stream') return 0;
  if (!Number.isSafeInteger(expected) || expected < 0) {
    throw new RangeError(
      `expected version must be a whole number ≥ 0, 'no_stream' or 'any'; got ${String(expected)}`,
    );
  }
  return expected;
}

interface DatabaseError {
  code?: string;
  constraint?: string;
  detail?: string;
}

function asDatabaseError(error: unknown): DatabaseError {
  return typeof error === 'object' && error !== null ? (error as DatabaseError) : {};
}

function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** SQL conditions (on alias e) for a filter and an upper time bound; pushes their parameters. */
function filterConditions(
  filter: EventFilter | undefined,
  until: Date | undefined,
  params: unknown[],
): string[] {
  const conditions: string[] = [];
  if (filter?.streamPrefixes) {
    params.push(filter.streamPrefixes.map(likePrefix));
    conditions.push(`e.stream_id LIKE ANY ($${params.length}::text[])`);
  }
  if (filter?.streams) {
    // Equality, so the planner can use the (stream_id, stream_position) index instead of scanning.
    params.push([...filter.streams]);
    conditions.push(`e.stream_id = ANY ($${params.length}::text[])`);
  }
  if (filter?.eventTypes) {
    params.push([...filter.eventTypes]);
    conditions.push(`e.event_type = ANY ($${params.length}::text[])`);
  }
  if (until) {
    params.push(until);
    conditions.push(`e.created_at <= $${params.length}::timestamptz`);
  }
  return conditions;
}

/** The log on PostgreSQL (storage only). */
export function createSqlEventLog(db: SqlDatabase, options: SqlEventStoreOptions = {}): EventLog {
  return new SqlEventLog(db, options);
}

/** The log on PostgreSQL and its consumers (subscription tables in the same database). */
export function createSqlEventStore(db: SqlDatabase, options: SqlEventStoreOptions = {}): EventStore {
  const log = createSqlEventLog(db, options);
  return composeEventStore(log, createConsumers(log, db, options.ownerId));
}

class SqlEventLog implements EventLog {
  readonly kind: 'embedded-postgres' | 'postgres';
  readonly announcesEveryAppend: boolean;
  private readonly announcer = new AppendAnnouncer();
  private readonly notify: boolean;
  private readonly fence: AppendFencing | undefined;
  private unlisten: Promise<(() => Promise<void>) | undefined> | undefined;
  private closed = false;

  constructor(
    private readonly db: SqlDatabase,
    options: SqlEventStoreOptions,
  ) {
    this.kind = options.kind ?? 'postgres';
    this.announcesEveryAppend = this.kind === 'embedded-postgres';
    this.notify = options.notify === true;
    this.fence = options.fence;
    if (this.notify && db.listen) {
      // Best effort: without it, subscribers in other processes still see new events at their next poll.
      this.unlisten = db.listen(NOTIFY_CHANNEL, () => this.announcer.announce()).catch(() => undefined);
    }
  }

  async append(
    stream: string,
    events: readonly NewEvent[],
    options: { expectedVersion?: ExpectedVersion } = {},
  ): Promise<AppendResult> {
    if (events.length === 0) throw new RangeError(`append to ${stream}: no events`);
    const expected = options.expectedVersion ?? 'any';
    const payload = events.map((event) => ({
      id: event.id ?? randomUUID(),
      type: event.type,
      data: event.data,
      metadata: event.metadata ?? {},
    }));
    let rows: Array<{
      transaction_id: string;
      stream_position: string;
      global_position: string;
      created_at: Date;
    }>;
    const fence = await this.fence?.tokenOf(stream);
    const params: unknown[] = [
      stream,
      streamCategory(stream),
      expectedToSql(expected),
      JSON.stringify(payload),
      this.notify,
    ];
    if (fence) params.push(fence.instanceId, fence.nodeId, fence.epoch);
    try {
      ({ rows } = await this.db.query(
        `SELECT transaction_id, stream_position::text AS stream_position, global_position::text AS global_position,
                created_at
           FROM ${fence ? 'zw_fenced_append($6, $7, $8::bigint, ' : 'es_append('}$1, $2, $3::bigint, $4::jsonb, $5)`,
        params,
      ));
    } catch (error) {
      const { code, constraint, detail } = asDatabaseError(error);
      if (fence && code === FENCED_SQLSTATE) {
        this.fence?.refused(fence);
        throw new FencedWriteError(fence.instanceId, error instanceof Error ? error.message : String(error));
      }
      if (code === 'ES409') {
        throw new WrongExpectedVersionError(
          stream,
          expected,
          detail === undefined ? undefined : Number(detail),
        );
      }
      if (code === '23505' && constraint === 'es_events_event_id_key')
        throw new DuplicateEventIdError(stream);
      if (code === '23505') throw new WrongExpectedVersionError(stream, expected, undefined);
      throw error;
    }
    const recorded = rows.map((row, index): RecordedEvent => ({
      id: payload[index]!.id,
      stream,
      streamPosition: int8ToNumber(row.stream_position),
      position: encodeCheckpoint(row.transaction_id, row.global_position),
      type: payload[index]!.type,
      data: { ...payload[index]!.data },
      metadata: { ...payload[index]!.metadata },
      createdAt: new Date(row.created_at),
    }));
    const last = recorded.at(-1)!;
    const result: AppendResult = {
      nextVersion: last.streamPosition,
      position: last.position,
      events: recorded,
    };
    this.announcer.appended(result, stream);
    return result;
  }

  async readStream(stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    const params: unknown[] = [stream, options.fromVersion ?? 1];
    const conditions = ['e.stream_id = $1', 'e.stream_position >= $2::bigint'];
    if (options.toVersion !== undefined) {
      params.push(options.toVersion);
      conditions.push(`e.stream_position <= $${params.length}::bigint`);
    }
    conditions.push(...filterConditions(undefined, options.until, params));
    let limit = '';
    if (options.limit !== undefined) {
      params.push(options.limit);
      limit = `LIMIT $${params.length}::int`;
    }
    const order = options.direction === 'backward' ? 'DESC' : 'ASC';
    const { rows } = await this.db.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM es_events e WHERE ${conditions.join(' AND ')}
        ORDER BY e.stream_position ${order} ${limit}`,
      params,
    );
    return rows.map(toRecorded);
  }

  async readAll(options: ReadAllOptions = {}): Promise<ReadAllResult> {
    const after = options.after ?? START;
    const from = decodeCheckpoint(after) ?? { high: 0n, low: 0n };
    const limit = options.limit ?? DEFAULT_READ_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError(`readAll limit must be ≥ 1; got ${limit}`);
    const params: unknown[] = [from.high.toString(), from.low.toString(), limit];
    const conditions = filterConditions(options.filter, options.until, params);
    // One statement, so the page and the head come from the same snapshot: the head tells how far a short
    // (filtered) page lets the reader move without skipping anything that becomes visible later.
    const { rows } = await this.db.query<EventRow & { head_tx: string | null; head_pos: string | null }>(
      `WITH visible AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
       head AS (
         SELECT e.transaction_id::text AS head_tx, e.global_position::text AS head_pos
           FROM es_events e, visible v
          WHERE e.transaction_id < v.xmin
          ORDER BY e.transaction_id DESC, e.global_position DESC
          LIMIT 1
       ),
       page AS (
         SELECT e.* FROM es_events e, visible v
          WHERE (e.transaction_id, e.global_position) > ($1::text::xid8, $2::bigint)
            AND e.transaction_id < v.xmin
            ${conditions.map((c) => `AND ${c}`).join(' ')}
          ORDER BY e.transaction_id, e.global_position
          LIMIT $3::int
       )
       SELECT h.head_tx, h.head_pos, ${EVENT_COLUMNS}
         FROM head h LEFT JOIN page e ON true
        ORDER BY e.transaction_id, e.global_position`,
      params,
    );
    const events = rows.filter((row) => row.event_id !== null).map(toRecorded);
    const headRow = rows[0];
    const head =
      headRow && headRow.head_tx !== null && headRow.head_pos !== null
        ? encodeCheckpoint(headRow.head_tx, headRow.head_pos)
        : START;
    if (events.length === limit) return { events, next: events.at(-1)!.position, caughtUp: false };
    const last = events.at(-1)?.position ?? after;
    return { events, next: maxCheckpoint(maxCheckpoint(after, last), head), caughtUp: true };
  }

  async streamVersion(stream: string): Promise<number> {
    const { rows } = await this.db.query<{ version: string }>(
      'SELECT version::text AS version FROM es_streams WHERE stream_id = $1',
      [stream],
    );
    return rows[0] ? int8ToNumber(rows[0].version) : 0;
  }

  async deleteStream(stream: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      // The stream row first: it waits for (and then excludes) appends in flight on this stream.
      await tx.query('DELETE FROM es_streams WHERE stream_id = $1', [stream]);
      await tx.query('DELETE FROM es_events WHERE stream_id = $1', [stream]);
    });
  }

  compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
    return compareCheckpoints(a, b);
  }

  async headPosition(): Promise<Checkpoint> {
    const { rows } = await this.db.query<{ tx: string; pos: string }>(
      `SELECT e.transaction_id::text AS tx, e.global_position::text AS pos
         FROM es_events e
        WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.transaction_id DESC, e.global_position DESC
        LIMIT 1`,
    );
    return rows[0] ? encodeCheckpoint(rows[0].tx, rows[0].pos) : START;
  }

  onAppended(listener: (result: AppendResult, stream: string) => void): () => void {
    return this.announcer.onAppended(listener);
  }

  onNewEvents(listener: (position?: Checkpoint) => void): () => void {
    return this.announcer.onNewEvents(listener);
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  /** Stops the LISTEN. The database belongs to the caller and stays open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const unlisten = await this.unlisten;
    await unlisten?.();
    this.announcer.clear();
  }
}
