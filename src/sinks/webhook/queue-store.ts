/**
 * Where each webhook queue stands, in zw_webhook_queues (migration 4003): the log position through which
 * its events are settled, whether the log's reader feeds it, and its health. One row per queue that ever
 * left the reader's pace; writes are batched (one statement for every queue that moved). SQL only: what
 * the fields mean is decided in dispatcher.ts.
 */
import { RELAXED_COMMIT } from '../../store/relaxed-commit.ts';
import type { Checkpoint } from '../../store/port.ts';
import type { SqlDatabase } from '../../store/sql.ts';

export type DeliveryTarget = 'instance' | 'global';
export type QueueState = 'delivering' | 'paused' | 'refusing';

export interface QueueHealth {
  readonly state: QueueState;
  /** When the queue entered `state` (paused: when the receiver went down). */
  readonly since: Date | undefined;
  /** Failed attempts in a row. */
  readonly failures: number;
  readonly lastError: string | undefined;
  readonly lastStatusCode: number | undefined;
  readonly lastAttemptAt: Date | undefined;
  readonly lastDeliveredAt: Date | undefined;
}

export interface QueueRecord extends QueueHealth {
  readonly instanceId: string;
  readonly target: DeliveryTarget;
  /** Every event of the queue at or before this position is settled. */
  readonly cursor: Checkpoint;
  /** True: the log's reader feeds the queue the events after `cursor`; false: it reads them itself. */
  readonly attached: boolean;
}

export const HEALTHY: QueueHealth = {
  state: 'delivering',
  since: undefined,
  failures: 0,
  lastError: undefined,
  lastStatusCode: undefined,
  lastAttemptAt: undefined,
  lastDeliveredAt: undefined,
};

interface Row {
  instance_id: string;
  target: DeliveryTarget;
  cursor: string;
  attached: boolean;
  state: QueueState;
  since: Date | string | null;
  failures: number;
  last_error: string | null;
  last_status_code: number | null;
  last_attempt_at: Date | string | null;
  last_delivered_at: Date | string | null;
}

const date = (value: Date | string | null): Date | undefined =>
  value === null ? undefined : new Date(value);

function recordOf(row: Row): QueueRecord {
  return {
    instanceId: row.instance_id,
    target: row.target,
    cursor: row.cursor as Checkpoint,
    attached: row.attached,
    state: row.state,
    since: date(row.since),
    failures: Number(row.failures),
    lastError: row.last_error ?? undefined,
    lastStatusCode: row.last_status_code ?? undefined,
    lastAttemptAt: date(row.last_attempt_at),
    lastDeliveredAt: date(row.last_delivered_at),
  };
}

export class QueueStore {
  constructor(private readonly db: SqlDatabase) {}

  async all(): Promise<QueueRecord[]> {
    const { rows } = await this.db.query<Row>('SELECT * FROM zw_webhook_queues');
    return rows.map(recordOf);
  }

  async ofInstance(instanceId: string): Promise<QueueRecord[]> {
    const { rows } = await this.db.query<Row>('SELECT * FROM zw_webhook_queues WHERE instance_id = $1', [
      instanceId,
    ]);
    return rows.map(recordOf);
  }

  /**
   * Writes the queues as given. A cursor only moves forward (a late write of an older position, from a
   * process that lost the lease meanwhile, cannot undo progress); everything else takes the new value.
   * Relaxed commit: a lost write only sends the events after the older cursor again, with their ids.
   */
  async save(records: readonly QueueRecord[]): Promise<void> {
    if (records.length === 0) return;
    const iso = (d: Date | undefined): string | null => (d ? d.toISOString() : null);
    await this.db.query(
      `INSERT INTO zw_webhook_queues AS q
         (instance_id, target, cursor, attached, state, since, failures, last_error, last_status_code,
          last_attempt_at, last_delivered_at)
       SELECT u.* FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::text[],
                              $6::timestamptz[], $7::int[], $8::text[], $9::int[], $10::timestamptz[],
                              $11::timestamptz[]) AS u
                  CROSS JOIN ${RELAXED_COMMIT}
       ON CONFLICT (instance_id, target) DO UPDATE SET
         cursor = CASE WHEN EXCLUDED.cursor > q.cursor THEN EXCLUDED.cursor ELSE q.cursor END,
         attached = EXCLUDED.attached, state = EXCLUDED.state, since = EXCLUDED.since,
         failures = EXCLUDED.failures, last_error = EXCLUDED.last_error,
         last_status_code = EXCLUDED.last_status_code, last_attempt_at = EXCLUDED.last_attempt_at,
         last_delivered_at = EXCLUDED.last_delivered_at, updated_at = now()`,
      [
        records.map((r) => r.instanceId),
        records.map((r) => r.target),
        records.map((r) => r.cursor),
        records.map((r) => r.attached),
        records.map((r) => r.state),
        records.map((r) => iso(r.since)),
        records.map((r) => r.failures),
        records.map((r) => r.lastError?.slice(0, 1000) ?? null),
        records.map((r) => r.lastStatusCode ?? null),
        records.map((r) => iso(r.lastAttemptAt)),
        records.map((r) => iso(r.lastDeliveredAt)),
      ],
    );
  }

  async forget(instanceId: string): Promise<void> {
    await this.db.query('DELETE FROM zw_webhook_queues WHERE instance_id = $1', [instanceId]);
  }
}
