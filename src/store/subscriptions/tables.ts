/**
 * Subscription state kept in SQL (es_subscriptions, es_dead_letters): the checkpoint, the lease that makes
 * one consumer at a time run a subscription, the last error, and dead letters. Shared by every adapter:
 * the SQL event store keeps these tables beside its events, the KurrentDB adapter keeps them in the
 * read-model database.
 */
import {
  START,
  type Checkpoint,
  type DeadLetter,
  type DeadLetterNote,
  type DeadLetterQuery,
  type RecordedEvent,
} from '../port.ts';
import type { SqlExecutor } from '../sql.ts';
import { RELAXED_COMMIT } from '../relaxed-commit.ts';

export class SubscriptionLeasedError extends Error {
  override readonly name = 'SubscriptionLeasedError';
  readonly code = 'ZW_ERR_SUBSCRIPTION_LEASED';
  constructor(readonly subscription: string) {
    super(
      `subscription ${subscription} is running (its lease is held); stop it before moving its checkpoint`,
    );
  }
}

const LEASE_UNTIL = `now() + ($3::int * interval '1 millisecond')`;

export class SubscriptionTables {
  constructor(private readonly db: SqlExecutor) {}

  /** Creates the subscription's row at `initial` unless it exists. Returns true when it created it. */
  async ensure(name: string, initial: Checkpoint): Promise<boolean> {
    const { rows } = await this.db.query(
      `INSERT INTO es_subscriptions (subscription_id, checkpoint) VALUES ($1, $2)
       ON CONFLICT (subscription_id) DO NOTHING RETURNING 1 AS created`,
      [name, initial],
    );
    return rows.length > 0;
  }

  async exists(name: string): Promise<boolean> {
    const { rows } = await this.db.query('SELECT 1 FROM es_subscriptions WHERE subscription_id = $1', [name]);
    return rows.length > 0;
  }

  /** Takes the lease when it is free, expired or already ours; returns the stored checkpoint, or undefined. */
  async claim(name: string, owner: string, leaseMs: number): Promise<Checkpoint | undefined> {
    const { rows } = await this.db.query<{ checkpoint: string }>(
      `UPDATE es_subscriptions SET owner = $2, lease_until = ${LEASE_UNTIL}, updated_at = now()
        WHERE subscription_id = $1 AND (owner IS NULL OR owner = $2 OR lease_until IS NULL OR lease_until < now())
       RETURNING checkpoint`,
      [name, owner, Math.ceil(leaseMs)],
    );
    return rows[0] ? (rows[0].checkpoint as Checkpoint) : undefined;
  }

  /** Extends our lease; false when it is no longer ours. */
  async renew(name: string, owner: string, leaseMs: number): Promise<boolean> {
    const { rows } = await this.db.query(
      `UPDATE es_subscriptions SET lease_until = ${LEASE_UNTIL}, updated_at = now()
        WHERE subscription_id = $1 AND owner = $2 RETURNING 1 AS renewed`,
      [name, owner, Math.ceil(leaseMs)],
    );
    return rows.length > 0;
  }

  /** Moves the checkpoint from `from` to `to` while we hold the lease; false when the lease is lost. */
  async advance(
    name: string,
    owner: string,
    from: Checkpoint,
    to: Checkpoint,
    leaseMs: number,
  ): Promise<boolean> {
    const { rows } = await this.db.query(
      // A lost advance (a database crash) only re-delivers the batch: no fsync to wait for.
      `UPDATE es_subscriptions
          SET checkpoint = $5, lease_until = ${LEASE_UNTIL}, last_error = NULL, updated_at = now()
         FROM ${RELAXED_COMMIT}
        WHERE subscription_id = $1 AND owner = $2 AND checkpoint = $4
       RETURNING 1 AS advanced`,
      [name, owner, Math.ceil(leaseMs), from, to],
    );
    return rows.length > 0;
  }

  /**
   * The checkpoint of a reader that runs on every node without a lease (a projection), its row created at
   * START when missing.
   */
  async ensureCheckpoint(name: string): Promise<Checkpoint> {
    const { rows } = await this.db.query<{ checkpoint: string }>(
      `INSERT INTO es_subscriptions (subscription_id) VALUES ($1)
       ON CONFLICT (subscription_id) DO UPDATE SET subscription_id = EXCLUDED.subscription_id
       RETURNING checkpoint`,
      [name],
    );
    return (rows[0]?.checkpoint ?? START) as Checkpoint;
  }

  /**
   * Compare-and-set of a lease-free reader's checkpoint (a projection, in its batch's transaction): moves it
   * from `from` to `to`; false when another node moved it first. The first writer holds the row's lock until
   * it commits, so the others find it moved and roll back. Relaxed: a lost commit loses the batch with it.
   */
  async moveCheckpoint(name: string, from: Checkpoint, to: Checkpoint): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE es_subscriptions SET checkpoint = $2, updated_at = now()
         FROM ${RELAXED_COMMIT} WHERE subscription_id = $1 AND checkpoint = $3`,
      [name, to, from],
    );
    return (rowCount ?? 0) > 0;
  }

  async recordError(name: string, owner: string, error: string): Promise<void> {
    await this.db.query(
      `UPDATE es_subscriptions SET last_error = $3, updated_at = now() WHERE subscription_id = $1 AND owner = $2`,
      [name, owner, error.slice(0, 2000)],
    );
  }

  async release(name: string, owner: string): Promise<void> {
    await this.db.query(
      `UPDATE es_subscriptions SET owner = NULL, lease_until = NULL, updated_at = now()
        WHERE subscription_id = $1 AND owner = $2`,
      [name, owner],
    );
  }

  async read(name: string): Promise<Checkpoint> {
    const { rows } = await this.db.query<{ checkpoint: string }>(
      'SELECT checkpoint FROM es_subscriptions WHERE subscription_id = $1',
      [name],
    );
    return (rows[0]?.checkpoint ?? START) as Checkpoint;
  }

  /** Sets the checkpoint of a subscription nobody runs; throws SubscriptionLeasedError while one does. */
  async reset(name: string, to: Checkpoint): Promise<void> {
    const { rows } = await this.db.query(
      `INSERT INTO es_subscriptions AS s (subscription_id, checkpoint) VALUES ($1, $2)
       ON CONFLICT (subscription_id) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, last_error = NULL, updated_at = now()
        WHERE s.owner IS NULL OR s.lease_until IS NULL OR s.lease_until < now()
       RETURNING 1 AS reset`,
      [name, to],
    );
    if (rows.length === 0) throw new SubscriptionLeasedError(name);
  }

  async addDeadLetter(
    subscription: string,
    event: RecordedEvent,
    error: string,
    attempts: number,
    note: DeadLetterNote = {},
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO es_dead_letters
         (subscription_id, event_id, stream_id, position, event_type, error, attempts, instance_id, detail)
       VALUES ($1, $2::uuid, $3, $4, $5, $6, $7::int, $8, $9::jsonb)
       ON CONFLICT (subscription_id, event_id)
       DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now(),
                     instance_id = EXCLUDED.instance_id, detail = EXCLUDED.detail`,
      [
        subscription,
        event.id,
        event.stream,
        event.position,
        event.type,
        error.slice(0, 4000),
        attempts,
        note.instanceId ?? null,
        JSON.stringify(note.detail ?? {}),
      ],
    );
  }

  async listDeadLetters(subscription: string): Promise<DeadLetter[]> {
    const { rows } = await this.db.query<DeadLetterRow>(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM es_dead_letters WHERE subscription_id = $1 ORDER BY position, event_id`,
      [subscription],
    );
    return rows.map(deadLetterOf);
  }

  async findDeadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.subscriptions) {
      params.push([...query.subscriptions]);
      where.push(`subscription_id = ANY($${params.length}::text[])`);
    }
    if (query.instanceId !== undefined) {
      params.push(query.instanceId);
      where.push(`instance_id = $${params.length}`);
    }
    if (query.before !== undefined) {
      params.push(query.before);
      where.push(`id < $${params.length}::bigint`);
    }
    params.push(Math.min(Math.max(query.limit ?? 50, 1), 1_000));
    const { rows } = await this.db.query<DeadLetterRow>(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM es_dead_letters
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(deadLetterOf);
  }

  async deadLetter(id: string): Promise<DeadLetter | undefined> {
    if (!/^\d{1,18}$/.test(id)) return undefined;
    const { rows } = await this.db.query<DeadLetterRow>(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM es_dead_letters WHERE id = $1::bigint`,
      [id],
    );
    return rows[0] ? deadLetterOf(rows[0]) : undefined;
  }

  /** How many dead letters each of these subscriptions holds (0 for none). */
  async countDeadLetters(subscriptions: readonly string[]): Promise<Map<string, number>> {
    const counts = new Map<string, number>(subscriptions.map((name) => [name, 0]));
    const { rows } = await this.db.query<{ subscription_id: string; count: number }>(
      `SELECT subscription_id, count(*)::int AS count FROM es_dead_letters
        WHERE subscription_id = ANY($1::text[]) GROUP BY subscription_id`,
      [[...subscriptions]],
    );
    for (const row of rows) counts.set(row.subscription_id, Number(row.count));
    return counts;
  }

  async capDeadLetters(subscriptions: readonly string[], instanceId: string, max: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM es_dead_letters WHERE id IN (
         SELECT id FROM es_dead_letters WHERE instance_id = $1 AND subscription_id = ANY($2::text[])
          ORDER BY id DESC OFFSET $3)`,
      [instanceId, [...subscriptions], max],
    );
    return rowCount ?? 0;
  }

  async pruneDeadLetters(subscriptions: readonly string[], failedBefore: Date): Promise<number> {
    const { rowCount } = await this.db.query(
      'DELETE FROM es_dead_letters WHERE subscription_id = ANY($1::text[]) AND failed_at < $2',
      [[...subscriptions], failedBefore],
    );
    return rowCount ?? 0;
  }

  async removeDeadLetter(subscription: string, eventId: string): Promise<void> {
    await this.db.query('DELETE FROM es_dead_letters WHERE subscription_id = $1 AND event_id = $2::uuid', [
      subscription,
      eventId,
    ]);
  }

  /** Dead letters point at events of the stream; a deleted stream leaves none behind. */
  async removeDeadLettersOfStream(stream: string): Promise<void> {
    await this.db.query('DELETE FROM es_dead_letters WHERE stream_id = $1', [stream]);
  }
}

const DEAD_LETTER_COLUMNS = `id::text AS id, subscription_id, event_id::text AS event_id, stream_id, position,
  event_type, instance_id, detail, error, attempts, failed_at`;

interface DeadLetterRow {
  id: string;
  subscription_id: string;
  event_id: string;
  stream_id: string;
  position: string;
  event_type: string;
  instance_id: string | null;
  detail: Record<string, unknown> | string | null;
  error: string;
  attempts: number;
  failed_at: Date | string;
}

function deadLetterOf(row: DeadLetterRow): DeadLetter {
  const detail =
    typeof row.detail === 'string' ? (JSON.parse(row.detail) as Record<string, unknown>) : row.detail;
  return {
    id: row.id,
    subscription: row.subscription_id,
    eventId: row.event_id,
    stream: row.stream_id,
    position: row.position as Checkpoint,
    eventType: row.event_type,
    instanceId: row.instance_id ?? undefined,
    detail: detail ?? {},
    error: row.error,
    attempts: Number(row.attempts),
    failedAt: new Date(row.failed_at),
  };
}
