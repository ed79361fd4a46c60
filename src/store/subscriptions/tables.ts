/**
 * Subscription state kept in SQL (es_subscriptions, es_dead_letters): the checkpoint, the lease that makes
 * one consumer at a time run a subscription, the last error, and dead letters. Shared by every adapter:
 * the SQL event store keeps these tables beside its events, the KurrentDB adapter keeps them in the
 * read-model database.
 */
import { START, type Checkpoint, type DeadLetter, type RecordedEvent } from '../port.ts';
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
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO es_dead_letters (subscription_id, event_id, stream_id, position, event_type, error, attempts)
       VALUES ($1, $2::uuid, $3, $4, $5, $6, $7::int)
       ON CONFLICT (subscription_id, event_id)
       DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, failed_at = now()`,
      [subscription, event.id, event.stream, event.position, event.type, error.slice(0, 4000), attempts],
    );
  }

  async listDeadLetters(subscription: string): Promise<DeadLetter[]> {
    const { rows } = await this.db.query<{
      event_id: string;
      error: string;
      attempts: number;
      failed_at: Date;
    }>(
      `SELECT event_id::text AS event_id, error, attempts, failed_at FROM es_dead_letters
        WHERE subscription_id = $1 ORDER BY position, event_id`,
      [subscription],
    );
    return rows.map((row) => ({
      subscription,
      eventId: row.event_id,
      error: row.error,
      attempts: Number(row.attempts),
      failedAt: new Date(row.failed_at),
    }));
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
