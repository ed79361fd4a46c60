/**
 * Rewinds: `POST /instance/:id/webhook/replay` sends a range of the instance's events to its current
 * webhook again (and a redelivery sends one dead-lettered event). A replay reads the range from the log
 * (the instance's two streams only), judges each event by the configuration as of the event (what was
 * subscribed then), and sends what would have been sent, with the same event ids, on a connection of its
 * own: the live queue goes on beside it. A receiver that is down pauses the replay, as it pauses a queue;
 * a refused event is counted (a redelivered one goes back to the dead letters). Replays are rows of
 * zw_webhook_replays and resume after a restart from how far they got.
 */
import type { Logger } from 'pino';
import { ZapwireError } from '../../domain/errors.ts';
import { instanceStream, whatsappStream } from '../../domain/events.ts';
import { START, type Checkpoint, type EventStore } from '../../store/port.ts';
import type { SqlDatabase } from '../../store/sql.ts';
import { sleep } from '../backoff.ts';
import { ConfigTimeline } from '../config-timeline.ts';
import type { SinkDirectory } from '../directory.ts';
import { routeOf } from '../routing.ts';
import { isExpired, probeDelay, verdictOf, type OutagePolicy } from './attempt-policy.ts';
import { deliveriesOf, recordedEventOf, type Delivery, type DeliveryRules } from './delivery.ts';
import { deadLetterSubscriptionOf, type SecretLookup } from './dispatcher.ts';
import type { DeliveryTarget } from './queue-store.ts';
import type { WebhookSender } from './sender.ts';
import { DELIVERY_ID_HEADER, EVENT_ID_HEADER, signatureHeaders } from './signature.ts';

export type ReplayState = 'running' | 'done' | 'cancelled';

export interface ReplayView {
  readonly id: string;
  readonly instanceId: string;
  /** The range: after this position (exclusive) or from this time, through this position or time. */
  readonly after: string;
  readonly through: string;
  readonly fromTime: Date | undefined;
  readonly toTime: Date | undefined;
  /** Only this event (a redelivery). */
  readonly eventId: string | undefined;
  /** The instance's webhook, or the global one (an admin's redelivery of a global dead letter). */
  readonly target: DeliveryTarget;
  /** How far it got (exclusive). */
  readonly cursor: string;
  readonly state: ReplayState;
  readonly sent: number;
  readonly lastError: string | undefined;
  readonly requestedBy: string;
  readonly createdAt: Date;
  readonly finishedAt: Date | undefined;
}

export interface ReplayRequest {
  /** Exclusive lower bound: a position, or START with `fromTime`. */
  readonly after: Checkpoint;
  readonly fromTime?: Date;
  /** Inclusive upper bound (default: the head when asked). */
  readonly through: Checkpoint;
  readonly toTime?: Date;
  readonly eventId?: string;
  /** Default the instance's webhook. */
  readonly target?: DeliveryTarget;
  readonly requestedBy: string;
}

export interface ReplayOptions {
  readonly db: SqlDatabase;
  readonly store: Pick<EventStore, 'readAll' | 'compareCheckpoints' | 'addDeadLetter'>;
  readonly rules: DeliveryRules;
  readonly directory: SinkDirectory | undefined;
  readonly sender: WebhookSender;
  readonly secretOf: SecretLookup;
  readonly policy: OutagePolicy;
  readonly logger: Logger;
  /** Replays of one instance running at once. Default 2. */
  readonly maxRunningPerInstance?: number;
  readonly now?: () => number;
}

interface Row {
  id: string;
  instance_id: string;
  after_pos: string;
  through_pos: string;
  from_time: Date | string | null;
  to_time: Date | string | null;
  event_id: string | null;
  target: string;
  cursor: string;
  state: ReplayState;
  sent: number;
  last_error: string | null;
  requested_by: string;
  created_at: Date | string;
  finished_at: Date | string | null;
}

const date = (value: Date | string | null): Date | undefined =>
  value === null ? undefined : new Date(value);

function viewOf(row: Row): ReplayView {
  return {
    id: String(row.id),
    instanceId: row.instance_id,
    after: row.after_pos,
    through: row.through_pos,
    fromTime: date(row.from_time),
    toTime: date(row.to_time),
    eventId: row.event_id ?? undefined,
    target: row.target === 'global' ? 'global' : 'instance',
    cursor: row.cursor,
    state: row.state,
    sent: Number(row.sent),
    lastError: row.last_error ?? undefined,
    requestedBy: row.requested_by,
    createdAt: new Date(row.created_at),
    finishedAt: date(row.finished_at),
  };
}

const PAGE = 100;
/** How often the process that works the webhook looks for replays asked of another process. */
const POLL_MS = 3_000;

export class WebhookReplays {
  private readonly running = new Map<string, Promise<void>>();
  private stopping = new AbortController();
  private active = false;
  private poll: NodeJS.Timeout | undefined;

  constructor(private readonly options: ReplayOptions) {}

  /**
   * Resumes the replays that were running, and picks up those asked of another process (a replay is a row;
   * the process that works the webhook runs it) every few seconds.
   */
  async start(): Promise<void> {
    if (this.active) return;
    this.active = true;
    if (this.stopping.signal.aborted) this.stopping = new AbortController();
    await this.pickUp();
    this.poll = setInterval(() => {
      this.pickUp().catch((error: unknown) =>
        this.options.logger.warn({ err: error }, 'webhook: cannot read the replays asked for'),
      );
    }, POLL_MS);
    this.poll.unref();
  }

  private async pickUp(): Promise<void> {
    const { rows } = await this.options.db.query<Row>(
      `SELECT * FROM zw_webhook_replays WHERE state = 'running' ORDER BY id`,
    );
    for (const row of rows) if (this.active) this.run(viewOf(row));
  }

  async stop(): Promise<void> {
    this.active = false;
    clearInterval(this.poll);
    this.stopping.abort();
    await Promise.all(this.running.values());
  }

  /** Records a replay and starts it (here, when this process works the webhook; else where it does). */
  async request(instanceId: string, request: ReplayRequest): Promise<ReplayView> {
    const max = this.options.maxRunningPerInstance ?? 2;
    const { rows: busy } = await this.options.db.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM zw_webhook_replays WHERE instance_id = $1 AND state = 'running'`,
      [instanceId],
    );
    if ((busy[0]?.count ?? 0) >= max) {
      throw new ZapwireError(
        'ZW_ERR_RATE_LIMITED',
        `${max} webhook replays of this instance are running already: wait for one to finish (GET /instance/:id/webhook) or cancel one`,
        undefined,
        10,
      );
    }
    const { rows } = await this.options.db.query<Row>(
      `INSERT INTO zw_webhook_replays
         (instance_id, after_pos, through_pos, from_time, to_time, event_id, cursor, requested_by, target)
       VALUES ($1, $2, $3, $4, $5, $6, $2, $7, $8) RETURNING *`,
      [
        instanceId,
        request.after,
        request.through,
        request.fromTime ?? null,
        request.toTime ?? null,
        request.eventId ?? null,
        request.requestedBy,
        request.target ?? 'instance',
      ],
    );
    const view = viewOf(rows[0]!);
    if (this.active) this.run(view);
    return view;
  }

  async list(instanceId: string, limit = 20): Promise<ReplayView[]> {
    const { rows } = await this.options.db.query<Row>(
      'SELECT * FROM zw_webhook_replays WHERE instance_id = $1 ORDER BY id DESC LIMIT $2',
      [instanceId, limit],
    );
    return rows.map(viewOf);
  }

  async cancel(instanceId: string, id: string): Promise<ReplayView | undefined> {
    if (!/^\d{1,18}$/.test(id)) return undefined;
    const { rows } = await this.options.db.query<Row>(
      `UPDATE zw_webhook_replays SET state = CASE WHEN state = 'running' THEN 'cancelled' ELSE state END,
              finished_at = coalesce(finished_at, now())
        WHERE id = $1::bigint AND instance_id = $2 RETURNING *`,
      [id, instanceId],
    );
    return rows[0] ? viewOf(rows[0]) : undefined;
  }

  /** A deleted instance's replays go with it. */
  async forget(instanceId: string): Promise<void> {
    await this.options.db.query('DELETE FROM zw_webhook_replays WHERE instance_id = $1', [instanceId]);
  }

  private run(replay: ReplayView): void {
    if (this.running.has(replay.id)) return;
    const done = this.replay(replay)
      .catch((error: unknown) =>
        this.options.logger.error({ err: error, replay: replay.id }, 'webhook replay failed; resumed later'),
      )
      .finally(() => this.running.delete(replay.id));
    this.running.set(replay.id, done);
  }

  private async replay(replay: ReplayView): Promise<void> {
    const { store, logger } = this.options;
    const streams = [instanceStream(replay.instanceId), whatsappStream(replay.instanceId)];
    const timeline = new ConfigTimeline(store, this.options.directory, logger, replay.instanceId);
    let cursor = replay.cursor as Checkpoint;
    await timeline.catchUpThrough(cursor);
    let sent = replay.sent;
    let lastError: string | undefined;
    const through = replay.through as Checkpoint;
    const pastEnd = (position: Checkpoint): boolean =>
      through !== START && store.compareCheckpoints(position, through) > 0;
    for (;;) {
      if (!this.active) return;
      if (await this.cancelled(replay.id)) return;
      const page = await store.readAll({ after: cursor, limit: PAGE, filter: { streams } });
      for (const event of page.events) {
        if (pastEnd(event.position)) {
          await this.finish(replay.id, cursor, sent, lastError);
          return;
        }
        timeline.apply(event);
        const wanted =
          (replay.eventId === undefined || event.id === replay.eventId) &&
          (replay.fromTime === undefined || event.createdAt >= replay.fromTime) &&
          (replay.toTime === undefined || event.createdAt <= replay.toTime);
        const route = wanted ? routeOf(event) : undefined;
        const instance = route ? await timeline.get(replay.instanceId) : undefined;
        const [delivery] =
          route && instance
            ? await deliveriesOf(this.options.rules, event, route.name, instance, (t) => t === replay.target)
            : [];
        if (delivery) {
          const outcome = await this.send(replay, delivery);
          if (outcome === 'stopped') {
            await this.save(replay.id, cursor, sent, lastError);
            return;
          }
          if (outcome === 'delivered') sent += 1;
          else lastError = outcome.refused;
        }
        cursor = event.position;
      }
      if (store.compareCheckpoints(page.next, cursor) > 0 && !pastEnd(page.next)) cursor = page.next;
      if (page.caughtUp || (replay.eventId !== undefined && sent > 0)) {
        await this.finish(replay.id, cursor, sent, lastError);
        return;
      }
      await this.save(replay.id, cursor, sent, lastError);
    }
  }

  /** Sends one event until the receiver answers: delivered, or refused (the refusal's text). */
  private async send(
    replay: ReplayView,
    delivery: Delivery,
  ): Promise<'delivered' | 'stopped' | { refused: string }> {
    const now = this.options.now ?? Date.now;
    for (let failures = 1; ; failures += 1) {
      if (!this.active) return 'stopped';
      if (isExpired(this.options.policy, delivery.storedAt, now()) && replay.eventId === undefined) {
        return { refused: 'older than WEBHOOK_MAX_AGE, not sent' };
      }
      const secret = await this.options.secretOf(delivery.instanceId, replay.target).catch(() => undefined);
      const result =
        secret === undefined
          ? {
              ok: false as const,
              statusCode: null,
              error: 'instance not found in the directory',
              durationMs: 0,
            }
          : await this.options.sender.send({
              url: delivery.url,
              body: delivery.body,
              headers: {
                [EVENT_ID_HEADER]: delivery.eventId,
                [DELIVERY_ID_HEADER]: `replay-${replay.id}`,
                'x-zapwire-event': delivery.eventName,
                'x-zapwire-replay': replay.id,
                ...signatureHeaders(delivery.body, secret),
              },
              timeoutMs: this.options.policy.timeoutMs,
              signal: this.stopping.signal,
              orderKey: `replay\u0000${replay.id}`,
            });
      if (!result.ok && result.aborted) return 'stopped';
      const verdict = verdictOf(result);
      if (verdict.kind === 'delivered') return 'delivered';
      if (verdict.kind === 'refused') {
        if (replay.eventId !== undefined) {
          await this.options.store.addDeadLetter(
            deadLetterSubscriptionOf(replay.target),
            recordedEventOf(delivery),
            `refused by the receiver: ${verdict.reason}`,
            1,
            {
              instanceId: delivery.instanceId,
              detail: {
                target: replay.target,
                url: delivery.url,
                eventName: delivery.eventName,
                reason: 'refused',
                statusCode: result.ok ? null : result.statusCode,
                storedAt: delivery.storedAt.toISOString(),
              },
            },
          );
        }
        return { refused: verdict.reason };
      }
      await this.save(replay.id, undefined, undefined, verdict.reason);
      await sleep(probeDelay(this.options.policy, failures, verdict.retryAfterMs), this.stopping.signal);
      if (await this.cancelled(replay.id)) return 'stopped';
    }
  }

  private async cancelled(id: string): Promise<boolean> {
    const { rows } = await this.options.db.query<{ state: ReplayState }>(
      'SELECT state FROM zw_webhook_replays WHERE id = $1::bigint',
      [id],
    );
    return rows[0]?.state !== 'running';
  }

  private async save(id: string, cursor?: Checkpoint, sent?: number, lastError?: string): Promise<void> {
    await this.options.db.query(
      `UPDATE zw_webhook_replays SET cursor = coalesce($2, cursor), sent = coalesce($3, sent),
              last_error = coalesce($4, last_error)
        WHERE id = $1::bigint`,
      [id, cursor ?? null, sent ?? null, lastError?.slice(0, 1000) ?? null],
    );
  }

  private async finish(id: string, cursor: Checkpoint, sent: number, lastError?: string): Promise<void> {
    await this.options.db.query(
      `UPDATE zw_webhook_replays SET cursor = $2, sent = $3, last_error = coalesce($4, last_error),
              state = CASE WHEN state = 'running' THEN 'done' ELSE state END, finished_at = now()
        WHERE id = $1::bigint`,
      [id, cursor, sent, lastError?.slice(0, 1000) ?? null],
    );
  }
}
