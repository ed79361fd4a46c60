/**
 * The webhook sink: subscription `sink-webhook` reads the log and hands each deliverable event (one per
 * target: the instance's webhookUrl, and WEBHOOK_GLOBAL_URL when set) to the dispatcher, which sends it
 * straight from memory; the checkpoint moves once every event of the batch is delivered or parked as a row
 * (dispatcher.ts). A crash before that reads the batch again: repeats carry the same event id, and the
 * unique (event, target) index keeps a parked event to one row.
 *
 * The subscription's lease makes one process in a cluster the reader; the dispatcher works the rows only in
 * the process that holds it (it starts with the first batch or once the subscription has caught up).
 */
import { processLogOnly, type InstanceLogWriter } from '../instance-log.ts';
import type { Logger } from 'pino';
import { isSubscribed } from '../../domain/event-names.ts';
import { instanceIdOfStream } from '../../domain/events.ts';
import { ZapwireError } from '../../domain/errors.ts';
import type { EventStore, RecordedEvent, Subscription, SubscriptionOptions } from '../../store/port.ts';
import type { SqlDatabase } from '../../store/sql.ts';
import type { ConfigTimeline } from '../config-timeline.ts';
import type { SinkMetrics } from '../metrics.ts';
import { DEFAULT_PAYLOAD, type PayloadRenderer } from '../payload.ts';
import { wants } from '../routing.ts';
import { startSinkSubscription, type RoutedEvent } from '../subscription.ts';
import {
  DeliveryLog,
  viewOf,
  type DeliveryQuery,
  type DeliveryTarget,
  type DeliveryView,
  type NewDelivery,
} from './delivery-log.ts';
import {
  GLOBAL_WEBHOOK_DEAD_LETTERS,
  DEFAULT_PIPELINE,
  WEBHOOK_SUBSCRIPTION,
  WebhookDispatcher,
  type SecretLookup,
  type WebhookRetryPolicy,
} from './dispatcher.ts';
import { WebhookSender } from './sender.ts';

/** The webhook sink's settings from the environment (WEBHOOK_*), besides the retry policy. */
export interface WebhookTuning {
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS (default true): false keeps instance webhooks on public addresses. */
  readonly allowPrivateNetworks?: boolean;
  /** Requests in flight across all webhook queues. Default 64. */
  readonly concurrency?: number;
  /** WEBHOOK_BATCH_MAX: events per POST (a JSON array) when several wait in one queue. Default 1. */
  readonly batchMax?: number;
  /** WEBHOOK_PIPELINE: requests in flight per queue, started in log order. Default 8. */
  readonly pipeline?: number;
  /** Delivered rows older than this are pruned from the log (WEBHOOK_RETENTION_DELIVERED_HOURS). Default 7 days. */
  readonly retentionMs?: number;
  /** Dead rows whose last attempt is older than this are pruned (WEBHOOK_RETENTION_DEAD_HOURS). Default 30 days. */
  readonly deadRetentionMs?: number;
  /** WEBHOOK_MAX_PENDING: rows waiting per instance and target. Default 10 000. */
  readonly maxPending?: number;
  /** WEBHOOK_MAX_DEAD: dead rows kept per instance. Default 1 000. */
  readonly maxDead?: number;
  /** WEBHOOK_MEMORY_MAX_MB, in bytes: delivery bodies held in memory. Default 64 MiB. */
  readonly memoryMaxBytes?: number;
  /** WEBHOOK_REDELIVER_PER_MINUTE: redeliveries an instance may ask for per minute. Default 30. */
  readonly redeliverPerMinute?: number;
  /** How long a batch of the log waits for its deliveries before parking the rest as rows. Default 250 ms. */
  readonly directWaitMs?: number;
  /** WEBHOOK_CA_FILE's certificates (PEM), trusted beside the system's roots. */
  readonly extraCaCertificates?: readonly string[];
}

export interface WebhookSinkOptions extends WebhookTuning {
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly timeline: ConfigTimeline;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  readonly policy: WebhookRetryPolicy;
  readonly secretOf: SecretLookup;
  /** Builds the request body (the profile's shape). Default zapwire's envelope. */
  readonly payload?: PayloadRenderer;
  /** Where cap lines go in the instance's own log. Default: the process log only. */
  readonly instanceLog?: InstanceLogWriter;
  /** WEBHOOK_GLOBAL_URL: receives every instance's subscribed events, besides the instance's own webhook. */
  readonly globalUrl?: string;
  readonly subscription?: Partial<SubscriptionOptions>;
}

export interface WebhookApi {
  /** The delivery log of an instance, newest first. */
  deliveries(instanceId: string, query?: DeliveryQuery): Promise<DeliveryView[]>;
  /** One delivery of the instance; undefined when it does not exist or belongs to another instance. */
  delivery(instanceId: string, deliveryId: string): Promise<DeliveryView | undefined>;
  /**
   * Queues a delivery again, behind what is pending now, to the instance's current webhook URL (the
   * original URL when the webhook is now unset). Removes the matching dead letter. A delivery that is still
   * pending, or already has a pending copy, is answered with that one instead of a new copy. undefined when
   * the delivery does not belong to the instance; a ZW_ERR_RATE_LIMITED error beyond
   * `redeliverPerMinute` copies per instance and minute.
   */
  redeliver(instanceId: string, deliveryId: string): Promise<DeliveryView | undefined>;
}

export class WebhookSink implements WebhookApi {
  readonly log: DeliveryLog;
  readonly dispatcher: WebhookDispatcher;
  private readonly sender: WebhookSender;
  private subscription: Subscription | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Redeliveries per instance in the current minute. */
  private readonly redeliveries = new Map<string, { windowStart: number; count: number }>();

  constructor(private readonly options: WebhookSinkOptions) {
    this.log = new DeliveryLog(options.db);
    this.sender = new WebhookSender({
      allowPrivateNetworks: options.allowPrivateNetworks ?? true,
      pipelining: options.pipeline ?? DEFAULT_PIPELINE,
      trustedUrls: options.globalUrl ? [options.globalUrl] : [],
      ...(options.extraCaCertificates ? { extraCaCertificates: options.extraCaCertificates } : {}),
    });
    this.dispatcher = new WebhookDispatcher({
      log: this.log,
      sender: this.sender,
      store: options.store,
      metrics: options.metrics,
      logger: options.logger,
      policy: options.policy,
      secretOf: options.secretOf,
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.batchMax ? { batchMax: options.batchMax } : {}),
      ...(options.pipeline ? { pipeline: options.pipeline } : {}),
      ...(options.directWaitMs !== undefined ? { directWaitMs: options.directWaitMs } : {}),
      ...(options.maxPending ? { maxPendingPerQueue: options.maxPending } : {}),
      ...(options.maxDead ? { maxDeadPerInstance: options.maxDead } : {}),
      ...(options.memoryMaxBytes ? { memoryMaxBytes: options.memoryMaxBytes } : {}),
      instanceLog: (instanceId, message, context) => this.instanceLog(instanceId, message, context),
    });
  }

  /** An error line in the instance's own log (GET /instance/logs/:id). */
  private instanceLog(instanceId: string, message: string, context: Record<string, unknown>): void {
    const write = this.options.instanceLog ?? processLogOnly(this.options.logger);
    write(instanceId, 'error', message, context).catch(() => undefined);
  }

  async start(): Promise<Subscription> {
    this.subscription = startSinkSubscription({
      store: this.options.store,
      name: WEBHOOK_SUBSCRIPTION,
      timeline: this.options.timeline,
      logger: this.options.logger,
      ...(this.options.subscription ? { subscription: this.options.subscription } : {}),
      handle: (routed, batch) => this.enqueue(routed, batch),
    });
    // Caught up means the lease is ours: work the rows (a batch before that starts the dispatcher too).
    void this.subscription.caughtUp.then(() => this.dispatcher.start());
    this.pruneTimer = setInterval(() => {
      this.prune().catch((error: unknown) => {
        this.options.logger.warn({ err: error }, 'webhook: pruning the delivery log failed');
      });
    }, 10 * 60_000);
    this.pruneTimer.unref();
    return this.subscription;
  }

  /** Retention: removes delivered and dead rows older than their retention. Returns the rows removed. */
  prune(now = new Date()): Promise<number> {
    const delivered = this.options.retentionMs ?? 7 * 24 * 3600_000;
    const dead = this.options.deadRetentionMs ?? 30 * 24 * 3600_000;
    return this.log.prune(new Date(now.getTime() - delivered), new Date(now.getTime() - dead));
  }

  async stop(): Promise<void> {
    clearInterval(this.pruneTimer);
    await this.subscription?.stop();
    await this.dispatcher.stop();
    this.sender.close();
  }

  private async enqueue(routed: readonly RoutedEvent[], batch: readonly RecordedEvent[]): Promise<void> {
    // Only the lease holder runs this handler: it works the queues from now on.
    this.dispatcher.start();
    const deleted = new Set(
      batch
        .filter((e) => e.type === 'InstanceDeleted')
        .map((e) => instanceIdOfStream(e.stream))
        .filter((id): id is string => id !== undefined),
    );
    const deliveries: NewDelivery[] = [];
    const globalUrl = this.options.globalUrl;
    for (const { event, name, instance } of routed) {
      if (deleted.has(instance.id)) continue;
      const targets: Array<[DeliveryTarget, string]> = [];
      if (wants(instance.sinks, 'webhook', name) && instance.sinks.webhookUrl) {
        targets.push(['instance', instance.sinks.webhookUrl]);
      }
      if (globalUrl && isSubscribed(instance.sinks.events, name)) targets.push(['global', globalUrl]);
      if (targets.length === 0) continue;
      const body = await (this.options.payload ?? DEFAULT_PAYLOAD).render(event, instance, name);
      if (body === undefined) continue;
      for (const [target, url] of targets) {
        deliveries.push({
          instanceId: instance.id,
          target,
          url,
          eventId: event.id,
          eventName: name,
          stream: event.stream,
          streamPosition: event.streamPosition,
          position: event.position,
          eventType: event.type,
          storedAt: event.createdAt,
          body,
        });
      }
    }
    for (const instanceId of deleted) {
      this.dispatcher.forget(instanceId);
      await this.log.purgeInstance(instanceId);
      void this.options.metrics.forgetInstance(instanceId);
    }
    await this.dispatcher.accept(deliveries);
  }

  async deliveries(instanceId: string, query: DeliveryQuery = {}): Promise<DeliveryView[]> {
    return (await this.log.list(instanceId, query)).map(viewOf);
  }

  async delivery(instanceId: string, deliveryId: string): Promise<DeliveryView | undefined> {
    const row = await this.log.get(instanceId, deliveryId);
    return row ? viewOf(row) : undefined;
  }

  async redeliver(instanceId: string, deliveryId: string): Promise<DeliveryView | undefined> {
    const original = await this.log.get(instanceId, deliveryId);
    if (!original) return undefined;
    // One copy at a time: asking again while one waits answers with it (no unbounded copies).
    if (original.status === 'pending') return viewOf(original);
    const waiting = await this.log.pendingCopyOf(instanceId, original.id);
    if (waiting) return viewOf(waiting);
    this.takeRedelivery(instanceId);
    const current =
      original.target === 'global'
        ? this.options.globalUrl
        : (this.options.timeline.peek(instanceId)?.sinks.webhookUrl ?? undefined);
    const copy = await this.log.requeue(original, current || original.url);
    if (original.status === 'dead') {
      const subscription = original.target === 'global' ? GLOBAL_WEBHOOK_DEAD_LETTERS : WEBHOOK_SUBSCRIPTION;
      await this.options.store.removeDeadLetter(subscription, original.eventId);
    }
    this.dispatcher.handoff([copy]);
    return viewOf(copy);
  }

  /** Counts a redelivery against the instance's allowance for this minute; throws when it is used up. */
  private takeRedelivery(instanceId: string): void {
    const perMinute = this.options.redeliverPerMinute ?? 30;
    const now = Date.now();
    let window = this.redeliveries.get(instanceId);
    if (!window || now - window.windowStart >= 60_000) {
      window = { windowStart: now, count: 0 };
      this.redeliveries.set(instanceId, window);
      if (this.redeliveries.size > 10_000) this.redeliveries.delete(this.redeliveries.keys().next().value!);
    }
    if (window.count >= perMinute) {
      const retryAfter = Math.max(1, Math.ceil((window.windowStart + 60_000 - now) / 1000));
      throw new ZapwireError(
        'ZW_ERR_RATE_LIMITED',
        `at most ${perMinute} redeliveries per minute for an instance (WEBHOOK_REDELIVER_PER_MINUTE): try again in ${retryAfter} s`,
        undefined,
        retryAfter,
      );
    }
    window.count += 1;
  }

  /** Removes a deleted instance's deliveries (the runtime calls it when it deletes the instance). */
  async forgetInstance(instanceId: string): Promise<void> {
    this.dispatcher.forget(instanceId);
    await this.log.purgeInstance(instanceId);
  }
}
