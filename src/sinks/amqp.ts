/**
 * The RabbitMQ sink (subscription `sink-rabbitmq`): each deliverable event of an instance with
 * rabbitmqEnable goes to a durable topic exchange (default `zapwire.events`) with routing key
 * `<instanceName>.<EVENT>`, as a persistent message whose messageId is the event id. The batch's checkpoint
 * moves only after the broker confirmed every message of it (publisher confirms). A lost connection fails
 * the batch; the subscription retries it after reconnecting with exponential backoff, so a broker outage
 * delays delivery but never drops an event (repeats carry the same messageId).
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import type { EventStore, Subscription, SubscriptionOptions } from '../store/port.ts';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';
import type { ConfigTimeline } from './config-timeline.ts';
import { buildEnvelope, serializeEnvelope } from './envelope.ts';
import type { SinkMetrics } from './metrics.ts';
import { amqpRoutingKey, wants } from './routing.ts';
import { startSinkSubscription, type RoutedEvent } from './subscription.ts';

export const AMQP_SUBSCRIPTION = 'sink-rabbitmq';
export const DEFAULT_AMQP_EXCHANGE = 'zapwire.events';

export interface AmqpSinkOptions {
  /** AMQP_URL, e.g. amqp://guest:guest@127.0.0.1:5672 */
  readonly url: string;
  /** AMQP_EXCHANGE, default `zapwire.events` (declared durable, type topic). */
  readonly exchange?: string;
  readonly store: EventStore;
  readonly timeline: ConfigTimeline;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  /** Shown by RabbitMQ as the connection's name. Default `zapwire-sinks`. */
  readonly connectionName?: string;
  readonly reconnect?: BackoffPolicy;
  /** How long a batch waits for the broker's confirms before it is retried. Default 15 s. */
  readonly confirmTimeoutMs?: number;
  readonly subscription?: Partial<SubscriptionOptions>;
}

class ConfirmTimeoutError extends Error {
  override readonly name = 'ConfirmTimeoutError';
}

/** One connection and confirm channel, re-established on demand after a loss, with backoff. */
class AmqpPublisher {
  private connection: ChannelModel | undefined;
  private channel: ConfirmChannel | undefined;
  private connecting: Promise<ConfirmChannel> | undefined;
  private failures = 0;
  private notBefore = 0;
  private readonly closing = new AbortController();

  constructor(
    private readonly options: AmqpSinkOptions,
    private readonly exchange: string,
  ) {}

  get connected(): boolean {
    return this.channel !== undefined;
  }

  ready(): Promise<ConfirmChannel> {
    if (this.channel) return Promise.resolve(this.channel);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<ConfirmChannel> {
    const { logger, metrics } = this.options;
    await sleep(this.notBefore - Date.now(), this.closing.signal);
    if (this.closing.signal.aborted) throw new Error('RabbitMQ sink stopped');
    let connection: ChannelModel | undefined;
    try {
      connection = await amqp.connect(this.options.url, {
        clientProperties: { connection_name: this.options.connectionName ?? 'zapwire-sinks' },
        timeout: 10_000,
      });
      const channel = await connection.createConfirmChannel();
      await channel.assertExchange(this.exchange, 'topic', { durable: true });
      const current = connection;
      connection.on('error', (error: Error) => logger.warn({ err: error }, 'RabbitMQ connection error'));
      connection.on('close', () => {
        if (this.connection !== current) return;
        this.connection = undefined;
        this.channel = undefined;
        metrics.setConnected('rabbitmq', false);
        if (!this.closing.signal.aborted) logger.warn('RabbitMQ connection closed; will reconnect');
      });
      channel.on('error', (error: Error) => logger.warn({ err: error }, 'RabbitMQ channel error'));
      channel.on('close', () => {
        if (this.channel !== channel) return;
        this.channel = undefined;
        // A channel closed by the broker (e.g. exchange deleted) leaves the connection: start afresh.
        current.close().catch(() => undefined);
      });
      this.connection = connection;
      this.channel = channel;
      this.failures = 0;
      metrics.setConnected('rabbitmq', true);
      logger.info({ exchange: this.exchange }, 'RabbitMQ sink connected');
      return channel;
    } catch (error) {
      connection?.close().catch(() => undefined);
      this.failures += 1;
      const delay = backoffDelay(this.options.reconnect ?? { baseMs: 500, maxMs: 30_000 }, this.failures);
      this.notBefore = Date.now() + delay;
      metrics.setConnected('rabbitmq', false);
      logger.warn({ err: error, retryInMs: delay }, 'RabbitMQ connect failed');
      throw error;
    }
  }

  /** Drops the current connection (after a failed batch whose state is unknown). */
  reset(): void {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    this.options.metrics.setConnected('rabbitmq', false);
    connection?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closing.abort();
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    await connection?.close().catch(() => undefined);
  }
}

export class AmqpSink {
  private readonly publisher: AmqpPublisher;
  private subscription: Subscription | undefined;
  readonly exchange: string;

  constructor(private readonly options: AmqpSinkOptions) {
    this.exchange = options.exchange ?? DEFAULT_AMQP_EXCHANGE;
    this.publisher = new AmqpPublisher(options, this.exchange);
  }

  get connected(): boolean {
    return this.publisher.connected;
  }

  start(): Subscription {
    this.subscription = startSinkSubscription({
      store: this.options.store,
      name: AMQP_SUBSCRIPTION,
      timeline: this.options.timeline,
      logger: this.options.logger,
      ...(this.options.subscription ? { subscription: this.options.subscription } : {}),
      handle: (routed) => this.publish(routed),
    });
    // Connect now rather than on the first event, so that event does not pay for the handshake.
    this.publisher.ready().catch(() => undefined);
    return this.subscription;
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
    await this.publisher.close();
  }

  private async publish(routed: readonly RoutedEvent[]): Promise<void> {
    const selected = routed.filter((r) => wants(r.instance.sinks, 'rabbitmq', r.name));
    if (selected.length === 0) return;
    const channel = await this.publisher.ready();
    try {
      for (const { event, name, instance } of selected) {
        const body = Buffer.from(serializeEnvelope(buildEnvelope(event, instance, name)), 'utf8');
        const accepted = channel.publish(this.exchange, amqpRoutingKey(instance.name, name), body, {
          persistent: true,
          messageId: event.id,
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          timestamp: Math.floor(event.createdAt.getTime() / 1000),
          type: name,
          appId: 'zapwire',
          headers: { 'x-zapwire-instance-id': instance.id, 'x-zapwire-position': event.position },
        });
        if (!accepted) await drained(channel);
      }
      await this.withTimeout(channel.waitForConfirms());
    } catch (error) {
      // Some messages of the batch may be confirmed: the retry repeats them with the same messageId.
      if (error instanceof ConfirmTimeoutError) this.publisher.reset();
      throw error;
    }
    const now = Date.now();
    for (const { event, instance } of selected)
      this.options.metrics.deliveredOne('rabbitmq', instance, event.createdAt, now);
  }

  private withTimeout(promise: Promise<void>): Promise<void> {
    const ms = this.options.confirmTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      promise,
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () => reject(new ConfirmTimeoutError(`no publisher confirms within ${ms} ms`)),
          ms,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

/** Resolves when the channel's write buffer drained, or it closed (the next publish then throws). */
function drained(channel: ConfirmChannel): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      channel.off('drain', done);
      channel.off('close', done);
      resolve();
    };
    channel.once('drain', done);
    channel.once('close', done);
  });
}
