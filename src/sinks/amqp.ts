/**
 * The RabbitMQ sink (subscription `sink-rabbitmq`): each deliverable event of an instance with
 * rabbitmqEnable goes to a durable topic exchange (default `zapwire.events`) with routing key
 * `<instanceName>.<EVENT>`, as a persistent message whose messageId is the event id. The batch's checkpoint
 * moves only after the broker confirmed every message of it (publisher confirms).
 *
 * An outage is not a failure of the event: a broker that cannot be reached, closes the connection, or nacks
 * (e.g. a queue full with `x-overflow: reject-publish`) pauses the sink, which keeps its position and
 * publishes again from the first unconfirmed message with a capped backoff, forever. Nothing is dropped or
 * dead-lettered for it; repeats carry the same messageId. The one refusal that is the event's is an
 * unroutable message: published `mandatory`, a message no queue is bound for comes back and is
 * dead-lettered, counted and noted in the instance log instead of vanishing silently.
 */
import { processLogOnly, type InstanceLogWriter } from './instance-log.ts';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Logger } from 'pino';
import { whatsappStream } from '../domain/events.ts';
import type {
  DeadLetterRetryResult,
  EventStore,
  RecordedEvent,
  Subscription,
  SubscriptionOptions,
} from '../store/port.ts';
import type { BrokerLag } from './broker-lag.ts';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';
import { sendAgain, sendPausing } from './outage.ts';
import type { ConfigTimeline } from './config-timeline.ts';
import type { SinkMetrics } from './metrics.ts';
import { DEFAULT_PAYLOAD, type PayloadRenderer } from './payload.ts';
import { amqpRoutingKey, wants } from './routing.ts';
import { startSinkSubscription, type RoutedEvent } from './subscription.ts';
import { AMQP_SUBSCRIPTION } from './broker-names.ts';

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
  /** Where the unroutable note goes in the instance's own log. Default: the process log only. */
  readonly instanceLog?: InstanceLogWriter;
  /** Shown by RabbitMQ as the connection's name. Default `zapwire-sinks`. */
  readonly connectionName?: string;
  readonly reconnect?: BackoffPolicy;
  /** Between two tries of a batch the broker did not confirm (down, nacking). Default 0.5 s → 30 s. */
  readonly retry?: BackoffPolicy;
  /** How long a batch waits for the broker's confirms before it is retried. Default 15 s. */
  readonly confirmTimeoutMs?: number;
  readonly subscription?: Partial<SubscriptionOptions>;
  /** Follows how far the sink is behind for each instance (health). */
  readonly lag?: BrokerLag;
}

class ConfirmTimeoutError extends Error {
  override readonly name = 'ConfirmTimeoutError';
}

const RABBITMQ = { kind: 'rabbitmq', name: 'RabbitMQ' } as const;

interface Outgoing {
  readonly item: RoutedEvent;
  readonly routingKey: string;
  readonly body: string;
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
      // Listeners first: the broker may close the channel while the exchange is declared (e.g. declared
      // before with other arguments), and an 'error' event nobody listens to would end the process.
      connection.on('error', (error: Error) => logger.warn({ err: error }, 'RabbitMQ connection error'));
      const channel = await connection.createConfirmChannel();
      channel.on('error', (error: Error) => logger.warn({ err: error }, 'RabbitMQ channel error'));
      await channel.assertExchange(this.exchange, 'topic', { durable: true });
      const current = connection;
      connection.on('close', () => {
        if (this.connection !== current) return;
        this.connection = undefined;
        this.channel = undefined;
        metrics.setConnected('rabbitmq', false);
        if (!this.closing.signal.aborted) logger.warn('RabbitMQ connection closed; will reconnect');
      });
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
  /** Ends the retries of a paused batch (stop). */
  private readonly stopping = new AbortController();
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
      subscription: {
        ...this.options.subscription,
        onActive: (active) => this.options.lag?.activeChanged(active),
      },
      handle: async (routed) => {
        this.options.lag?.learned(routed);
        await this.publish(routed);
      },
    });
    // Connect now rather than on the first event, so that event does not pay for the handshake.
    this.publisher.ready().catch(() => undefined);
    return this.subscription;
  }

  async stop(): Promise<void> {
    // A batch paused by an outage stops retrying (it is not acknowledged: sent again on the next start).
    this.stopping.abort();
    await this.subscription?.stop();
    await this.publisher.close();
  }

  /**
   * Publishes a dead-lettered event again (POST /admin/dead-letters/:id/retry), judged by the configuration
   * as of the event. Published: the dead letter goes; unroutable again: it stays, with the new error.
   */
  retry(event: RecordedEvent): Promise<DeadLetterRetryResult> {
    return sendAgain(event, {
      sink: { name: 'RabbitMQ', subscription: AMQP_SUBSCRIPTION },
      store: this.options.store,
      message: async (routed) => (await this.outgoing([routed], { all: true }))[0],
      publish: (message) => this.publishOutgoing([message], { once: true }),
      where: (message) => `(exchange ${this.exchange}, routing key ${message.routingKey})`,
    });
  }

  /** The batch's messages for RabbitMQ, in order (events the profile has no message for are left out). */
  private async outgoing(
    routed: readonly RoutedEvent[],
    { all = false }: { all?: boolean } = {},
  ): Promise<Outgoing[]> {
    const selected = all ? routed : routed.filter((r) => wants(r.instance.sinks, 'rabbitmq', r.name));
    const payload = this.options.payload ?? DEFAULT_PAYLOAD;
    const out: Outgoing[] = [];
    for (const item of selected) {
      const body = await payload.render(item.event, item.instance, item.name);
      if (body !== undefined)
        out.push({ item, routingKey: amqpRoutingKey(item.instance.name, item.name), body });
    }
    return out;
  }

  private async publish(routed: readonly RoutedEvent[]): Promise<void> {
    const outgoing = await this.outgoing(routed);
    if (outgoing.length > 0) await this.publishOutgoing(outgoing);
  }

  /**
   * Publishes until the broker confirmed every message. After a nack, a confirm timeout or a lost connection
   * it probes with the first unconfirmed message, with a capped backoff, until the broker confirms it, then
   * sends the rest; until stop() (then it throws: the batch is not acknowledged). `once`: one try, throwing
   * when it is not confirmed. Dead-letters the messages the broker returned as unroutable; resolves with
   * their event ids.
   */
  private async publishOutgoing(outgoing: readonly Outgoing[], { once = false } = {}): Promise<Set<string>> {
    const { logger, metrics } = this.options;
    const returned = new Map<string, string>();
    await sendPausing(
      outgoing,
      async (batch) => {
        const { confirmed, failure } = await this.publishOnce(batch, returned);
        return { settled: confirmed, failure };
      },
      {
        sink: RABBITMQ,
        logger,
        metrics,
        retry: this.options.retry,
        signal: this.stopping.signal,
        once,
        onPause: (why) => this.options.lag?.pauseChanged(why),
      },
    );
    const now = Date.now();
    const unroutable = new Set<string>();
    for (const { item, routingKey } of outgoing) {
      const { event, instance } = item;
      const why = returned.get(event.id);
      if (why === undefined) {
        metrics.deliveredOne('rabbitmq', instance, event.createdAt, now);
        continue;
      }
      unroutable.add(event.id);
      await this.unroutable(event, instance, routingKey, why);
    }
    return unroutable;
  }

  /**
   * One try: publishes the messages in order and waits for the broker's confirms. Resolves with how many
   * messages from the first on were confirmed, and why the next one was not (undefined: all were).
   */
  private async publishOnce(
    outgoing: readonly Outgoing[],
    returned: Map<string, string>,
  ): Promise<{ confirmed: number; failure?: unknown }> {
    let channel: ConfirmChannel;
    try {
      channel = await this.publisher.ready();
    } catch (error) {
      return { confirmed: 0, failure: error };
    }
    // The broker answers a mandatory message it cannot route with basic.return before its ack, so every
    // return of this batch has arrived once the confirms have.
    const onReturn = (message: amqp.Message): void => {
      const id: unknown = message.properties.messageId;
      const fields = message.fields as amqp.MessageFields & { replyCode?: number; replyText?: string };
      if (typeof id === 'string')
        returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? 'returned'}`.trim());
    };
    channel.on('return', onReturn);
    const results: Array<{ error: unknown } | 'confirmed' | undefined> = outgoing.map(() => undefined);
    const confirms: Array<Promise<void>> = [];
    let failure: unknown;
    try {
      for (const [index, { item, routingKey, body }] of outgoing.entries()) {
        const { event, name, instance } = item;
        let settle!: () => void;
        confirms.push(new Promise<void>((resolve) => (settle = resolve)));
        const accepted = channel.publish(
          this.exchange,
          routingKey,
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
          (error: unknown) => {
            results[index] = error ? { error } : 'confirmed';
            settle();
          },
        );
        if (!accepted) await drained(channel);
      }
      await this.withTimeout(Promise.all(confirms).then(() => undefined));
    } catch (error) {
      // Some messages may be confirmed: the next try starts at the first that is not (same messageId).
      failure = error;
      if (error instanceof ConfirmTimeoutError) this.publisher.reset();
    } finally {
      channel.off('return', onReturn);
    }
    const confirmed = results.findIndex((result) => result !== 'confirmed');
    if (confirmed === -1) return { confirmed: outgoing.length };
    const result = results[confirmed];
    return {
      confirmed,
      failure:
        failure ??
        (typeof result === 'object' ? result.error : new Error('RabbitMQ did not confirm the message')),
    };
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
    await store.addDeadLetter(AMQP_SUBSCRIPTION, event, error, 1, {
      instanceId: instance.id,
      detail: { exchange: this.exchange, routingKey, reason: 'unroutable' },
    });
    const now = Date.now();
    if ((this.loggedUnroutable.get(instance.id) ?? 0) > now - 60_000) return;
    this.loggedUnroutable.set(instance.id, now);
    // A deleted instance's stream must not be recreated by a line about an event from before its deletion.
    if ((await store.streamVersion(whatsappStream(instance.id)).catch(() => 0)) === 0) return;
    const write = this.options.instanceLog ?? processLogOnly(logger);
    await write(
      instance.id,
      'warn',
      `${error}; the event was dead-lettered (bind a queue to receive this instance's events)`,
      { sink: 'rabbitmq', routingKey, eventId: event.id },
    ).catch((failure: unknown) =>
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
