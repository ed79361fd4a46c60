/**
 * The webhook sink: subscription `sink-webhook` turns each deliverable event into outbox rows (one per
 * target: the instance's webhookUrl, and WEBHOOK_GLOBAL_URL when set) and moves its checkpoint once they
 * are committed; the dispatcher sends them. A crash between the two re-enqueues the batch, and the unique
 * (event, target) index drops the repeats, so nothing is lost and nothing enqueued twice.
 */
import type { Logger } from 'pino';
import { isSubscribed } from '../../domain/event-names.ts';
import { instanceIdOfStream } from '../../domain/events.ts';
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
  WEBHOOK_SUBSCRIPTION,
  WebhookDispatcher,
  type SecretLookup,
  type WebhookRetryPolicy,
} from './dispatcher.ts';
import { WebhookSender } from './sender.ts';

export interface WebhookSinkOptions {
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly timeline: ConfigTimeline;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  readonly policy: WebhookRetryPolicy;
  readonly secretOf: SecretLookup;
  /** Builds the request body (the profile's shape). Default zapwire's envelope. */
  readonly payload?: PayloadRenderer;
  /** WEBHOOK_GLOBAL_URL: receives every instance's subscribed events, besides the instance's own webhook. */
  readonly globalUrl?: string;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS (default true): false keeps instance webhooks on public addresses. */
  readonly allowPrivateNetworks?: boolean;
  readonly concurrency?: number;
  /** WEBHOOK_BATCH_MAX: events per POST (a JSON array) when several wait in one queue. Default 1. */
  readonly batchMax?: number;
  /** Delivered rows older than this are pruned from the log. Default 7 days. */
  readonly retentionMs?: number;
  readonly subscription?: Partial<SubscriptionOptions>;
}

export interface WebhookApi {
  /** The delivery log of an instance, newest first. */
  deliveries(instanceId: string, query?: DeliveryQuery): Promise<DeliveryView[]>;
  /** One delivery of the instance; undefined when it does not exist or belongs to another instance. */
  delivery(instanceId: string, deliveryId: string): Promise<DeliveryView | undefined>;
  /**
   * Queues a delivery again (any status), behind what is pending now, to the instance's current webhook URL
   * (the original URL when the webhook is now unset). Removes the matching dead letter. undefined when the
   * delivery does not belong to the instance.
   */
  redeliver(instanceId: string, deliveryId: string): Promise<DeliveryView | undefined>;
}

export class WebhookSink implements WebhookApi {
  readonly log: DeliveryLog;
  readonly dispatcher: WebhookDispatcher;
  private readonly sender: WebhookSender;
  private subscription: Subscription | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WebhookSinkOptions) {
    this.log = new DeliveryLog(options.db);
    this.sender = new WebhookSender({
      allowPrivateNetworks: options.allowPrivateNetworks ?? true,
      trustedUrls: options.globalUrl ? [options.globalUrl] : [],
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
    });
  }

  async start(): Promise<Subscription> {
    await this.dispatcher.start();
    this.subscription = startSinkSubscription({
      store: this.options.store,
      name: WEBHOOK_SUBSCRIPTION,
      timeline: this.options.timeline,
      logger: this.options.logger,
      ...(this.options.subscription ? { subscription: this.options.subscription } : {}),
      handle: (routed, batch) => this.enqueue(routed, batch),
    });
    const retention = this.options.retentionMs ?? 7 * 24 * 3600_000;
    this.pruneTimer = setInterval(() => {
      this.log.pruneDelivered(new Date(Date.now() - retention)).catch((error: unknown) => {
        this.options.logger.warn({ err: error }, 'webhook: pruning the delivery log failed');
      });
    }, 10 * 60_000);
    this.pruneTimer.unref();
    return this.subscription;
  }

  async stop(): Promise<void> {
    clearInterval(this.pruneTimer);
    await this.subscription?.stop();
    await this.dispatcher.stop();
    this.sender.close();
  }

  private async enqueue(routed: readonly RoutedEvent[], batch: readonly RecordedEvent[]): Promise<void> {
    const rows: NewDelivery[] = [];
    const globalUrl = this.options.globalUrl;
    for (const { event, name, instance } of routed) {
      const targets: Array<[DeliveryTarget, string]> = [];
      if (wants(instance.sinks, 'webhook', name) && instance.sinks.webhookUrl) {
        targets.push(['instance', instance.sinks.webhookUrl]);
      }
      if (globalUrl && isSubscribed(instance.sinks.events, name)) targets.push(['global', globalUrl]);
      if (targets.length === 0) continue;
      const body = await (this.options.payload ?? DEFAULT_PAYLOAD).render(event, instance, name);
      if (body === undefined) continue;
      for (const [target, url] of targets) {
        rows.push({
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
    const deleted = batch
      .filter((e) => e.type === 'InstanceDeleted')
      .map((e) => instanceIdOfStream(e.stream))
      .filter((id): id is string => id !== undefined);
    if (rows.length === 0 && deleted.length === 0) return;
    // One INSERT is atomic by itself; a transaction (three round trips) only when a purge goes with it.
    const inserted =
      deleted.length === 0
        ? await this.log.enqueue(rows)
        : await this.options.db.transaction(async (tx) => {
            const result = await this.log.enqueue(rows, tx);
            for (const instanceId of deleted) await this.log.purgeInstance(instanceId, tx);
            return result;
          });
    for (const instanceId of deleted) {
      this.dispatcher.forget(instanceId);
      void this.options.metrics.forgetInstance(instanceId);
    }
    this.dispatcher.handoff(inserted.filter((row) => !deleted.includes(row.instanceId)));
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

  /** Removes a deleted instance's deliveries (the runtime calls it when it deletes the instance). */
  async forgetInstance(instanceId: string): Promise<void> {
    this.dispatcher.forget(instanceId);
    await this.log.purgeInstance(instanceId);
  }
}
