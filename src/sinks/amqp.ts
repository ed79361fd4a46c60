/**
 * The RabbitMQ sink (subscription `sink-rabbitmq`): each deliverable event of an instance with
 * rabbitmqEnable goes to a durable topic exchange (default `zapwire.events`) with routing key
 * `<instanceName>.<EVENT>`, as a persistent message whose messageId is the event id. The batch's checkpoint
 * moves only after the broker confirmed every message of it (publisher confirms). A lost connection fails
 * the batch; the subscription retries it after reconnecting with exponential backoff, so a broker outage
 * delays delivery but never drops an event (repeats carry the same messageId). Messages are published
 * `mandatory`: one the broker cannot route (no queue bound) comes back and is dead-lettered, counted and
 * noted in the instance log instead of vanishing silently.
 */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import { whatsappStream } from '../domain/events.ts';
import type { EventStore, RecordedEvent, Subscription, SubscriptionOptions } from '../store/port.ts';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';
import type { ConfigTimeline } from './config-timeline.ts';
import type { SinkMetrics } from './metrics.ts';
import { DEFAULT_PAYLOAD, type PayloadRenderer } from './payload.ts';
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
  /** Builds the message body (the profile's shape). Default zapwire's envelope. */
  readonly payload?: PayloadRenderer;
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
  /** When each instance's log last got an "unroutable" line (one a minute at most). */
  private readonly loggedUnroutable = new Map<string, number>();
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
    const payload = this.options.payload ?? DEFAULT_PAYLOAD;
    const bodies: Array<{ item: RoutedEvent; body: string }> = [];
    for (const item of selected) {
      const body = await payload.render(item.event, item.instance, item.name);
      // Events the profile has no message for (Evolution GO's shape) are not sent.
      if (body !== undefined) bodies.push({ item, body });
    }
    if (bodies.length === 0) return;
    const channel = await this.publisher.ready();
    // The broker answers a mandatory message it cannot route with basic.return before its ack, so every
    // return of this batch has arrived once the confirms have.
    const returned = new Map<string, string>();
    const onReturn = (message: amqp.Message): void => {
      const id: unknown = message.properties.messageId;
      const fields = message.fields as amqp.MessageFields & { replyCode?: number; replyText?: string };
      if (typeof id === 'string')
        returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? 'returned'}`.trim());
    };
    channel.on('return', onReturn);
    try {
      for (const { item, body } of bodies) {
        const { event, name, instance } = item;
        const accepted = channel.publish(
          this.exchange,
          amqpRoutingKey(instance.name, name),
          Buffer.from(body, 'utf8'),
          {
            persistent: true,
            mandatory: true,
            messageId: event.id,
            contentType: 'application/json',
            contentEncoding: 'utf-8',
            timestamp: Math.floor(event.createdAt.getTime() / 1000),
            type: name,
            appId: 'zapwire',
            headers: { 'x-zapwire-instance-id': instance.id, 'x-zapwire-position': event.position },
          },
        );
        if (!accepted) await drained(channel);
      }
      await this.withTimeout(channel.waitForConfirms());
    } catch (error) {
      // Some messages of the batch may be confirmed: the retry repeats them with the same messageId.
      if (error instanceof ConfirmTimeoutError) this.publisher.reset();
      throw error;
    } finally {
      channel.off('return', onReturn);
    }
    const now = Date.now();
    for (const { item } of bodies) {
      const { event, name, instance } = item;
      const why = returned.get(event.id);
      if (why === undefined) this.options.metrics.deliveredOne('rabbitmq', instance, event.createdAt, now);
      else await this.unroutable(event, instance, amqpRoutingKey(instance.name, name), why);
    }
  }

  /**
   * No queue was bound for the message's routing key. Not retried: it stays unroutable until someone binds
   * a queue, and one subscription carries every instance, so retrying would hold back all of them. It is
   * dead-lettered (store dead letters, subscription `sink-rabbitmq`), counted, and said in the process log
   * and, at most once a minute per instance, in the instance log (GET /instance/logs/:id).
   */
  private async unroutable(
    event: RecordedEvent,
    instance: { readonly id: string; readonly name: string },
    routingKey: string,
    why: string,
  ): Promise<void> {
    const { store, metrics, logger } = this.options;
    const error = `RabbitMQ returned the message as unroutable (${why}): no queue is bound to exchange ${this.exchange} for routing key ${routingKey}`;
    metrics.unroutableOne('rabbitmq', instance);
    logger.warn(
      { eventId: event.id, instanceId: instance.id, routingKey },
      'RabbitMQ message unroutable; dead-lettered',
    );
    await store.addDeadLetter(AMQP_SUBSCRIPTION, event, error, 1);
    const now = Date.now();
    if ((this.loggedUnroutable.get(instance.id) ?? 0) > now - 60_000) return;
    this.loggedUnroutable.set(instance.id, now);
    // A deleted instance's stream must not be recreated by a line about an event from before its deletion.
    if ((await store.streamVersion(whatsappStream(instance.id)).catch(() => 0)) === 0) return;
    await store
      .append(
        whatsappStream(instance.id),
        [
          {
            type: 'RuntimeLogged',
            data: {
              at: new Date(now).toISOString(),
              level: 'warn',
              message: `${error}; the event was dead-lettered (bind a queue to receive this instance's events)`,
              context: { sink: 'rabbitmq', routingKey, eventId: event.id },
            },
          },
        ],
        { expectedVersion: 'any' },
      )
      .catch((failure: unknown) =>
        logger.warn(
          { err: failure, instanceId: instance.id },
          'could not write the unroutable notice to the instance log',
        ),
      );
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
