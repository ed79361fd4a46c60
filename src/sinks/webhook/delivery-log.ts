/**
 * The webhook delivery log: table zw_webhook_deliveries (migrations 4001, 4002). Events are sent straight
 * from the log; a row exists only for a delivery that needed more than that: one that failed and waits for
 * its retry, one whose receiver was too slow for the batch it came in (and every event queued behind it),
 * a dead one, and redeliveries. SQL only; the ordering and retry rules live in dispatcher.ts.
 */
import { RELAXED_COMMIT } from '../../store/relaxed-commit.ts';
import type { SqlDatabase, SqlExecutor } from '../../store/sql.ts';

export type DeliveryTarget = 'instance' | 'global';
export type DeliveryStatus = 'pending' | 'delivered' | 'dead';

export interface NewDelivery {
  readonly instanceId: string;
  readonly target: DeliveryTarget;
  readonly url: string;
  readonly eventId: string;
  readonly eventName: string;
  readonly stream: string;
  readonly streamPosition: number;
  readonly position: string;
  readonly eventType: string;
  readonly storedAt: Date;
  readonly body: string;
}

export interface DeliveryRow extends NewDelivery {
  readonly id: string;
  readonly status: DeliveryStatus;
  readonly attempts: number;
  readonly nextAttemptAt: Date;
  readonly lastAttemptAt: Date | null;
  readonly lastStatusCode: number | null;
  readonly lastError: string | null;
  readonly lastDurationMs: number | null;
  readonly deliveredAt: Date | null;
  readonly redeliveryOf: string | null;
  readonly createdAt: Date;
}

/** What the API shows: the row without the body. */
export type DeliveryView = Omit<DeliveryRow, 'body' | 'stream' | 'streamPosition' | 'eventType'>;

export interface DeliveryQuery {
  readonly status?: DeliveryStatus;
  readonly eventId?: string;
  readonly target?: DeliveryTarget;
  /** Page backwards: only deliveries with a smaller id. */
  readonly before?: string;
  /** Default 50, at most 500. */
  readonly limit?: number;
}

export interface AttemptOutcome {
  readonly id: string;
  readonly attempts: number;
  readonly at: Date;
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly durationMs: number;
}

interface Row {
  id: string;
  instance_id: string;
  target: DeliveryTarget;
  url: string;
  event_id: string;
  event_name: string;
  stream: string;
  stream_position: number;
  position: string;
  event_type: string;
  stored_at: Date | string;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date | string;
  last_attempt_at: Date | string | null;
  last_status_code: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  delivered_at: Date | string | null;
  redelivery_of: string | null;
  created_at: Date | string;
}

// `id` is selected as text (int8 differs between the adapters): ORDER BY must name the table's column.
const COLUMNS = `id::text AS id, instance_id, target, url, event_id, event_name, stream, stream_position, position,
  event_type, stored_at, body, status, attempts, next_attempt_at, last_attempt_at, last_status_code, last_error,
  last_duration_ms, delivered_at, redelivery_of::text AS redelivery_of, created_at`;

const date = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
const dateOrNull = (v: Date | string | null): Date | null => (v === null ? null : date(v));

function fromRow(r: Row): DeliveryRow {
  return {
    id: r.id,
    instanceId: r.instance_id,
    target: r.target,
    url: r.url,
    eventId: r.event_id,
    eventName: r.event_name,
    stream: r.stream,
    streamPosition: Number(r.stream_position),
    position: r.position,
    eventType: r.event_type,
    storedAt: date(r.stored_at),
    body: r.body,
    status: r.status,
    attempts: Number(r.attempts),
    nextAttemptAt: date(r.next_attempt_at),
    lastAttemptAt: dateOrNull(r.last_attempt_at),
    lastStatusCode: r.last_status_code === null ? null : Number(r.last_status_code),
    lastError: r.last_error,
    lastDurationMs: r.last_duration_ms === null ? null : Number(r.last_duration_ms),
    deliveredAt: dateOrNull(r.delivered_at),
    redeliveryOf: r.redelivery_of,
    createdAt: date(r.created_at),
  };
}

export function viewOf(row: DeliveryRow): DeliveryView {
  const { body: _body, stream: _stream, streamPosition: _sp, eventType: _type, ...view } = row;
  return view;
}

const NEW_COLUMNS = 11;

/** Orders decimal id strings numerically. */
/** A delivery never tried yet, as a row with this id (`''`: held only in memory, not stored). */
export function pendingRow(delivery: NewDelivery, id: string, createdAt: Date): DeliveryRow {
  return {
    ...delivery,
    id,
    status: 'pending',
    attempts: 0,
    nextAttemptAt: createdAt,
    lastAttemptAt: null,
    lastStatusCode: null,
    lastError: null,
    lastDurationMs: null,
    deliveredAt: null,
    redeliveryOf: null,
    createdAt,
  };
}

export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

export class DeliveryLog {
  constructor(private readonly db: SqlDatabase) {}

  /**
   * Enqueues in one statement; an (event, target) already enqueued is skipped (a batch handled twice).
   * Returns the rows actually inserted, as the dispatcher will see them.
   */
  async enqueue(deliveries: readonly NewDelivery[], executor: SqlExecutor = this.db): Promise<DeliveryRow[]> {
    if (deliveries.length === 0) return [];
    const params: unknown[] = [];
    const tuples = deliveries.map((d, i) => {
      params.push(
        d.instanceId,
        d.target,
        d.url,
        d.eventId,
        d.eventName,
        d.stream,
        d.streamPosition,
        d.position,
        d.eventType,
        d.storedAt.toISOString(),
        d.body,
      );
      const b = i * NEW_COLUMNS;
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7}::int, $${b + 8}, $${b + 9}, $${b + 10}::timestamptz, $${b + 11})`;
    });
    const { rows } = await executor.query<{
      id: string;
      event_id: string;
      target: DeliveryTarget;
      created_at: Date | string;
    }>(
      // Rows the subscription writes again from the log if a database crash loses them: no fsync.
      `INSERT INTO zw_webhook_deliveries
         (instance_id, target, url, event_id, event_name, stream, stream_position, position, event_type, stored_at, body)
       SELECT v.* FROM (VALUES ${tuples.join(', ')}) AS v CROSS JOIN ${RELAXED_COMMIT}
       ON CONFLICT (event_id, target) WHERE redelivery_of IS NULL DO NOTHING
       RETURNING id::text AS id, event_id, target, created_at`,
      params,
    );
    const byKey = new Map(deliveries.map((d) => [`${d.target}\u0000${d.eventId}`, d]));
    return rows
      .map((r): DeliveryRow | undefined => {
        const d = byKey.get(`${r.target}\u0000${r.event_id}`);
        return d ? pendingRow(d, r.id, date(r.created_at)) : undefined;
      })
      .filter((r): r is DeliveryRow => r !== undefined)
      .sort((a, b) => compareIds(a.id, b.id));
  }

  /** Every (instance, target) with pending deliveries: the queues to resume after a restart. */
  async pendingQueues(): Promise<Array<{ instanceId: string; target: DeliveryTarget }>> {
    const { rows } = await this.db.query<{ instance_id: string; target: DeliveryTarget }>(
      `SELECT DISTINCT instance_id, target FROM zw_webhook_deliveries WHERE status = 'pending'`,
    );
    return rows.map((r) => ({ instanceId: r.instance_id, target: r.target }));
  }

  /** The first pending deliveries of one queue, in order, leaving out `skip` (finished, not yet recorded). */
  async nextPending(
    instanceId: string,
    target: DeliveryTarget,
    limit: number,
    skip: ReadonlySet<string> = new Set(),
  ): Promise<DeliveryRow[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM zw_webhook_deliveries
       WHERE instance_id = $1 AND target = $2 AND status = 'pending'
       ORDER BY zw_webhook_deliveries.id LIMIT $3`,
      [instanceId, target, limit + skip.size],
    );
    return rows
      .map(fromRow)
      .filter((r) => !skip.has(r.id))
      .slice(0, limit);
  }

  /** Marks many deliveries delivered in one statement. */
  async markDelivered(outcomes: readonly AttemptOutcome[]): Promise<void> {
    if (outcomes.length === 0) return;
    const params: unknown[] = [];
    const tuples = outcomes.map((o, i) => {
      params.push(o.id, o.attempts, o.at.toISOString(), o.statusCode, o.durationMs);
      const b = i * 5;
      return `($${b + 1}::bigint, $${b + 2}::int, $${b + 3}::timestamptz, $${b + 4}::int, $${b + 5}::int)`;
    });
    await this.db.query(
      `UPDATE zw_webhook_deliveries d
       SET status = 'delivered', attempts = v.attempts, last_attempt_at = v.at, delivered_at = v.at,
           last_status_code = v.code, last_duration_ms = v.duration, last_error = NULL
       FROM (VALUES ${tuples.join(', ')}) AS v(id, attempts, at, code, duration) CROSS JOIN ${RELAXED_COMMIT}
       WHERE d.id = v.id AND d.status = 'pending'`,
      params,
    );
  }

  /** A failed attempt that will be retried at `nextAttemptAt`. */
  async recordFailure(outcome: AttemptOutcome, nextAttemptAt: Date): Promise<void> {
    await this.db.query(
      `UPDATE zw_webhook_deliveries
       SET attempts = $2, last_attempt_at = $3::timestamptz, last_status_code = $4, last_error = $5,
           last_duration_ms = $6, next_attempt_at = $7::timestamptz
       WHERE id = $1::bigint AND status = 'pending'`,
      [
        outcome.id,
        outcome.attempts,
        outcome.at.toISOString(),
        outcome.statusCode,
        outcome.error,
        outcome.durationMs,
        nextAttemptAt.toISOString(),
      ],
    );
  }

  async markDead(outcome: AttemptOutcome): Promise<void> {
    await this.db.query(
      `UPDATE zw_webhook_deliveries
       SET status = 'dead', attempts = $2, last_attempt_at = $3::timestamptz, last_status_code = $4,
           last_error = $5, last_duration_ms = $6
       WHERE id = $1::bigint AND status = 'pending'`,
      [
        outcome.id,
        outcome.attempts,
        outcome.at.toISOString(),
        outcome.statusCode,
        outcome.error,
        outcome.durationMs,
      ],
    );
  }

  async get(instanceId: string, id: string): Promise<DeliveryRow | undefined> {
    if (!/^\d{1,18}$/.test(id)) return undefined;
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM zw_webhook_deliveries WHERE id = $1::bigint AND instance_id = $2`,
      [id, instanceId],
    );
    return rows[0] ? fromRow(rows[0]) : undefined;
  }

  async list(instanceId: string, query: DeliveryQuery = {}): Promise<DeliveryRow[]> {
    const where = ['instance_id = $1'];
    const params: unknown[] = [instanceId];
    if (query.status) {
      params.push(query.status);
      where.push(`status = $${params.length}`);
    }
    if (query.eventId) {
      params.push(query.eventId);
      where.push(`event_id = $${params.length}`);
    }
    if (query.target) {
      params.push(query.target);
      where.push(`target = $${params.length}`);
    }
    if (query.before && /^\d{1,18}$/.test(query.before)) {
      params.push(query.before);
      where.push(`id < $${params.length}::bigint`);
    }
    params.push(Math.min(500, Math.max(1, query.limit ?? 50)));
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM zw_webhook_deliveries WHERE ${where.join(' AND ')}
       ORDER BY zw_webhook_deliveries.id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(fromRow);
  }

  /** A fresh pending copy of a delivery, queued behind everything pending now. */
  async requeue(original: DeliveryRow, url: string): Promise<DeliveryRow> {
    const { rows } = await this.db.query<Row>(
      `INSERT INTO zw_webhook_deliveries
         (instance_id, target, url, event_id, event_name, stream, stream_position, position, event_type, stored_at,
          body, redelivery_of)
       SELECT instance_id, target, $2, event_id, event_name, stream, stream_position, position, event_type, stored_at,
          body, id
       FROM zw_webhook_deliveries WHERE id = $1::bigint
       RETURNING ${COLUMNS}`,
      [original.id, url],
    );
    const row = rows[0];
    if (!row) throw new Error(`delivery ${original.id} vanished`);
    return fromRow(row);
  }

  async purgeInstance(instanceId: string, executor: SqlExecutor = this.db): Promise<void> {
    await executor.query('DELETE FROM zw_webhook_deliveries WHERE instance_id = $1', [instanceId]);
  }

  /**
   * Retention: drops delivered rows delivered before `deliveredBefore` and dead rows whose last attempt was
   * before `deadBefore`. Pending rows stay (they are capped per instance instead). Returns the rows removed.
   */
  async prune(deliveredBefore: Date, deadBefore: Date): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM zw_webhook_deliveries
        WHERE (status = 'delivered' AND delivered_at < $1::timestamptz)
           OR (status = 'dead' AND last_attempt_at < $2::timestamptz)`,
      [deliveredBefore.toISOString(), deadBefore.toISOString()],
    );
    return rowCount;
  }

  /** Pending rows of one queue (the pending cap). */
  async countPending(instanceId: string, target: DeliveryTarget): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM zw_webhook_deliveries
        WHERE instance_id = $1 AND target = $2 AND status = 'pending'`,
      [instanceId, target],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Keeps the newest `max` dead rows of an instance; returns how many older ones it removed. */
  async capDead(instanceId: string, max: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM zw_webhook_deliveries WHERE id IN (
         SELECT id FROM zw_webhook_deliveries WHERE instance_id = $1 AND status = 'dead'
          ORDER BY id DESC OFFSET $2)`,
      [instanceId, max],
    );
    return rowCount;
  }

  /** A pending redelivery of this delivery, if one is queued already. */
  async pendingCopyOf(instanceId: string, originalId: string): Promise<DeliveryRow | undefined> {
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM zw_webhook_deliveries
        WHERE instance_id = $1 AND redelivery_of = $2::bigint AND status = 'pending'
        ORDER BY zw_webhook_deliveries.id LIMIT 1`,
      [instanceId, originalId],
    );
    return rows[0] ? fromRow(rows[0]) : undefined;
  }
}
