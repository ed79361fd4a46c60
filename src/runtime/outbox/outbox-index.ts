/**
 * The outbox's index in SQL (migration 2004_outbox.sql): what the owner of an instance loads when it adopts
 * it (pending sends, recent idempotency keys, pacing, a restriction's pause) without reading the instance's
 * whole `outbox-<id>` stream. The stream is the truth: the index records how far it has read it
 * (`applied_version`), and the owner reads the stream on from there.
 */
import type { SendContent, SendPacing } from '../../domain/outbox.ts';
import type { SqlDatabase } from '../../store/sql.ts';

export type SendState = 'queued' | 'scheduled' | 'sent' | 'failed' | 'cancelled';

export interface IndexedSend {
  readonly sendId: string;
  readonly messageId: string;
  readonly to: string;
  readonly state: SendState;
  readonly requestedAt: string;
  readonly sendAt: string | null;
  readonly finishedAt: string | null;
  readonly idempotencyKey: string | null;
  readonly requestHash: string | null;
  /** What a send not done yet needs to go out. */
  readonly content: SendContent | null;
  /** SendSent's or SendFailed's data. */
  readonly outcome: Readonly<Record<string, unknown>> | null;
}

export interface IndexedPause {
  readonly until: string;
  readonly code: string;
  readonly reason: string;
}

export interface IndexedInstance {
  readonly appliedVersion: number;
  readonly pacing: Partial<SendPacing> | null;
  readonly pause: IndexedPause | null;
  readonly pauseStreak: number;
  /** Sends not done, and every send asked for since `since`. */
  readonly sends: readonly IndexedSend[];
}

interface SendRow {
  send_id: string;
  message_id: string;
  recipient: string;
  state: SendState;
  requested_at: Date;
  send_at: Date | null;
  finished_at: Date | null;
  idempotency_key: string | null;
  request_hash: string | null;
  request: SendContent | null;
  outcome: Record<string, unknown> | null;
}

const SEND_COLUMNS = `send_id, message_id, recipient, state, requested_at, send_at, finished_at,
  idempotency_key, request_hash, request, outcome`;

function sendOf(row: SendRow): IndexedSend {
  return {
    sendId: row.send_id,
    messageId: row.message_id,
    to: row.recipient,
    state: row.state,
    requestedAt: row.requested_at.toISOString(),
    sendAt: row.send_at?.toISOString() ?? null,
    finishedAt: row.finished_at?.toISOString() ?? null,
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    content: row.request,
    outcome: row.outcome,
  };
}

export class OutboxIndex {
  constructor(private readonly db: SqlDatabase) {}

  async load(instanceId: string, since: Date): Promise<IndexedInstance> {
    const { rows: instances } = await this.db.query<{
      applied_version: string;
      pacing: Partial<SendPacing> | null;
      paused_until: Date | null;
      pause_code: string | null;
      pause_reason: string | null;
      pause_streak: number;
    }>(
      `SELECT applied_version::text AS applied_version, pacing, paused_until, pause_code, pause_reason, pause_streak
         FROM zw_outbox_instances WHERE instance_id = $1`,
      [instanceId],
    );
    const { rows } = await this.db.query<SendRow>(
      `SELECT ${SEND_COLUMNS} FROM zw_outbox_sends
        WHERE instance_id = $1 AND (state IN ('queued', 'scheduled') OR requested_at >= $2)
        ORDER BY requested_at, send_id`,
      [instanceId, since],
    );
    const row = instances[0];
    return {
      appliedVersion: row ? Number(row.applied_version) : 0,
      pacing: row?.pacing ?? null,
      pause:
        row?.paused_until && row.pause_code
          ? { until: row.paused_until.toISOString(), code: row.pause_code, reason: row.pause_reason ?? '' }
          : null,
      pauseStreak: row?.pause_streak ?? 0,
      sends: rows.map(sendOf),
    };
  }

  async find(instanceId: string, sendId: string): Promise<IndexedSend | undefined> {
    const { rows } = await this.db.query<SendRow>(
      `SELECT ${SEND_COLUMNS} FROM zw_outbox_sends WHERE instance_id = $1 AND send_id = $2`,
      [instanceId, sendId],
    );
    return rows[0] ? sendOf(rows[0]) : undefined;
  }

  /** Writes sends as they stand now and how far the stream was read: one statement, one round trip. */
  async write(
    instanceId: string,
    appliedVersion: number,
    sends: readonly IndexedSend[],
    pacing: SendPacing | undefined,
  ): Promise<void> {
    const rows = sends.map((send) => {
      const done = send.state !== 'queued' && send.state !== 'scheduled';
      return {
        send_id: send.sendId,
        message_id: send.messageId,
        recipient: send.to,
        state: send.state,
        requested_at: send.requestedAt,
        send_at: send.sendAt,
        finished_at: send.finishedAt,
        idempotency_key: send.idempotencyKey,
        request_hash: send.requestHash,
        request: done ? null : send.content,
        outcome: send.outcome,
      };
    });
    await this.db.query(
      `WITH given AS (
         SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(send_id text, message_id text, recipient text,
           state text, requested_at timestamptz, send_at timestamptz, finished_at timestamptz,
           idempotency_key text, request_hash text, request jsonb, outcome jsonb)
       ), sends AS (
         INSERT INTO zw_outbox_sends (instance_id, send_id, message_id, recipient, state, requested_at, send_at,
           finished_at, idempotency_key, request_hash, request, outcome)
         SELECT $1, send_id, message_id, recipient, state, requested_at, send_at, finished_at, idempotency_key,
           request_hash, request, outcome FROM given
         ON CONFLICT (instance_id, send_id) DO UPDATE SET state = EXCLUDED.state,
           finished_at = EXCLUDED.finished_at, request = EXCLUDED.request, outcome = EXCLUDED.outcome
       )
       INSERT INTO zw_outbox_instances (instance_id, applied_version, pacing) VALUES ($1, $3, $4)
       ON CONFLICT (instance_id) DO UPDATE SET
         applied_version = GREATEST(zw_outbox_instances.applied_version, EXCLUDED.applied_version),
         pacing = COALESCE(EXCLUDED.pacing, zw_outbox_instances.pacing)`,
      [instanceId, JSON.stringify(rows), appliedVersion, pacing ? JSON.stringify(pacing) : null],
    );
  }

  async setPause(instanceId: string, pause: IndexedPause | null, streak: number): Promise<void> {
    await this.db.query(
      `INSERT INTO zw_outbox_instances (instance_id, paused_until, pause_code, pause_reason, pause_streak)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (instance_id) DO UPDATE SET paused_until = EXCLUDED.paused_until,
         pause_code = EXCLUDED.pause_code, pause_reason = EXCLUDED.pause_reason,
         pause_streak = EXCLUDED.pause_streak`,
      [instanceId, pause?.until ?? null, pause?.code ?? null, pause?.reason ?? null, streak],
    );
  }

  /** Drops finished sends older than `before` (their idempotency keys with them). */
  async prune(instanceId: string, before: Date): Promise<void> {
    await this.db.query(
      `DELETE FROM zw_outbox_sends
        WHERE instance_id = $1 AND state NOT IN ('queued', 'scheduled') AND requested_at < $2`,
      [instanceId, before],
    );
  }

  async forget(instanceId: string): Promise<void> {
    await this.db.query('DELETE FROM zw_outbox_sends WHERE instance_id = $1', [instanceId]);
    await this.db.query('DELETE FROM zw_outbox_instances WHERE instance_id = $1', [instanceId]);
  }
}
