/**
 * The NATS sink (subscription `sink-nats`): each deliverable event of an instance with natsEnable goes to
 * subject `<prefix>.<instanceName>.<EVENT>` (prefix default `zapwire`). Where a JetStream stream covers the
 * subject (looked up with `jsm.streams.find`, cached briefly) the event is published through JetStream with
 * msgID = event id, so the stream drops repeats inside its duplicate window, and the checkpoint moves after
 * the stream's acks; otherwise it is a core publish (header `Nats-Msg-Id` set all the same) and the batch
 * ends with a flush: the server has it, and core NATS promises nothing beyond that.
 *
 * A lost connection fails the batch; the client reconnects (and this sink reconnects from scratch, with
 * backoff, if the client gave up), and the batch is published again.
 */
import {
  connect,
  headers as natsHeaders,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  type NatsError,
} from 'nats';
import type { Logger } from 'pino';
import type { EventStore, Subscription, SubscriptionOptions } from '../store/port.ts';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';
import type { ConfigTimeline } from './config-timeline.ts';
import type { SinkMetrics } from './metrics.ts';
import { DEFAULT_PAYLOAD, type PayloadRenderer } from './payload.ts';
import { natsSubject, wants } from './routing.ts';
import { startSinkSubscription, type RoutedEvent } from './subscription.ts';

export const NATS_SUBSCRIPTION = 'sink-nats';
export const DEFAULT_NATS_PREFIX = 'zapwire';

export interface NatsSinkOptions {
  /** NATS_URL, e.g. nats://127.0.0.1:4222 */
  readonly url: string;
  /** NATS_SUBJECT_PREFIX, default `zapwire`. */
  readonly prefix?: string;
  readonly store: EventStore;
  readonly timeline: ConfigTimeline;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  /** Builds the message body (the profile's shape). Default zapwire's envelope. */
  readonly payload?: PayloadRenderer;
  /** Client name shown by the server. Default `zapwire-sinks`. */
  readonly connectionName?: string;
  readonly reconnect?: BackoffPolicy;
  /** How long a subject's "covered by stream X / by none" answer is reused. Default 30 s. */
  readonly streamLookupTtlMs?: number;
  /** Per JetStream ack / flush. Default 10 s. */
  readonly publishTimeoutMs?: number;
  /**
   * Attempts for an event a stream refuses (e.g. the stream is full): after these it is dead-lettered
   * (`sink-nats`) so one instance's stream cannot hold back the others. Default 5.
   */
  readonly maxRejections?: number;
  readonly subscription?: Partial<SubscriptionOptions>;
}

function isStreamRejection(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as NatsError).api_error !== undefined;
}

export class NatsSink {
  private connection: NatsConnection | undefined;
  private manager: JetStreamManager | null | undefined;
  private connecting: Promise<NatsConnection> | undefined;
  private failures = 0;
  private notBefore = 0;
  private readonly closing = new AbortController();
  private readonly streams = new Map<string, { stream: string | null; expiresAt: number }>();
  private subscription: Subscription | undefined;
  readonly prefix: string;

  constructor(private readonly options: NatsSinkOptions) {
    this.prefix = options.prefix ?? DEFAULT_NATS_PREFIX;
  }

  get connected(): boolean {
    return this.connection !== undefined && !this.connection.isClosed();
  }

  start(): Subscription {
    this.subscription = startSinkSubscription({
      store: this.options.store,
      name: NATS_SUBSCRIPTION,
      timeline: this.options.timeline,
      logger: this.options.logger,
      ...(this.options.subscription ? { subscription: this.options.subscription } : {}),
      handle: (routed) => this.publish(routed),
    });
    // Connect now rather than on the first event, so that event does not pay for the handshake.
    this.ready().catch(() => undefined);
    return this.subscription;
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
    this.closing.abort();
    const connection = this.connection;
    this.connection = undefined;
    await connection?.close().catch(() => undefined);
  }

  private ready(): Promise<NatsConnection> {
    if (this.connection && !this.connection.isClosed()) return Promise.resolve(this.connection);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<NatsConnection> {
    const { logger, metrics } = this.options;
    await sleep(this.notBefore - Date.now(), this.closing.signal);
    if (this.closing.signal.aborted) throw new Error('NATS sink stopped');
    try {
      const connection = await connect({
        servers: this.options.url,
        name: this.options.connectionName ?? 'zapwire-sinks',
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: 10_000,
      });
      this.connection = connection;
      this.manager = undefined;
      this.streams.clear();
      this.failures = 0;
      metrics.setConnected('nats', true);
      logger.info('NATS sink connected');
      void (async () => {
        for await (const status of connection.status()) {
          if (status.type === 'disconnect') metrics.setConnected('nats', false);
          if (status.type === 'reconnect') {
            metrics.setConnected('nats', true);
            logger.info('NATS sink reconnected');
          }
        }
      })().catch(() => undefined);
      void connection.closed().then(() => {
        if (this.connection === connection) this.connection = undefined;
        metrics.setConnected('nats', false);
      });
      return connection;
    } catch (error) {
      this.failures += 1;
      const delay = backoffDelay(this.options.reconnect ?? { baseMs: 500, maxMs: 30_000 }, this.failures);
      this.notBefore = Date.now() + delay;
      metrics.setConnected('nats', false);
      logger.warn({ err: error, retryInMs: delay }, 'NATS connect failed');
      throw error;
    }
  }

  /** The stream that captures `subject`, or null; cached for streamLookupTtlMs. */
  private async streamFor(connection: NatsConnection, subject: string): Promise<string | null> {
    const now = Date.now();
    const hit = this.streams.get(subject);
    if (hit && hit.expiresAt > now) return hit.stream;
    if (this.manager === undefined) {
      try {
        this.manager = await connection.jetstreamManager({
          timeout: this.options.publishTimeoutMs ?? 10_000,
        });
      } catch {
        this.manager = null; // JetStream not enabled: core publishes only.
      }
    }
    let stream: string | null = null;
    if (this.manager) {
      try {
        stream = await this.manager.streams.find(subject);
      } catch (error) {
        if (!/no stream matches subject/i.test(String((error as Error).message))) throw error;
      }
    }
    this.streams.set(subject, { stream, expiresAt: now + (this.options.streamLookupTtlMs ?? 30_000) });
    return stream;
  }

  private async publish(routed: readonly RoutedEvent[]): Promise<void> {
    const selected = routed.filter((r) => wants(r.instance.sinks, 'nats', r.name));
    if (selected.length === 0) return;
    const connection = await this.ready();
    const js = connection.jetstream({ timeout: this.options.publishTimeoutMs ?? 10_000 });
    const acks: Array<{ item: RoutedEvent; subject: string; data: Uint8Array; ack: Promise<unknown> }> = [];
    let core = 0;
    // Events the profile has no message for (Evolution GO's shape): not sent, not counted.
    const skipped = new Set<string>();
    for (const item of selected) {
      const { event, name, instance } = item;
      const subject = natsSubject(this.prefix, instance.name, name);
      const body = await (this.options.payload ?? DEFAULT_PAYLOAD).render(event, instance, name);
      if (body === undefined) {
        skipped.add(event.id);
        continue;
      }
      const data = new TextEncoder().encode(body);
      const stream = await this.streamFor(connection, subject);
      if (stream) {
        acks.push({ item, subject, data, ack: js.publish(subject, data, { msgID: event.id }) });
      } else {
        const h = natsHeaders();
        h.set('Nats-Msg-Id', event.id);
        connection.publish(subject, data, { headers: h });
        core += 1;
      }
    }
    const settled = await Promise.allSettled(acks.map((a) => a.ack));
    const deadLettered = new Set<string>();
    for (const [i, result] of settled.entries()) {
      if (result.status === 'fulfilled') continue;
      // A connection problem fails the batch; a stream refusing one message is that message's problem.
      if (!isStreamRejection(result.reason)) throw result.reason;
      const { item, subject, data } = acks[i]!;
      if (!(await this.retryRefused(js, item, subject, data, result.reason))) deadLettered.add(item.event.id);
    }
    if (core > 0) await this.flush(connection);
    const now = Date.now();
    for (const { event, instance } of selected) {
      if (deadLettered.has(event.id) || skipped.has(event.id)) continue;
      this.options.metrics.deliveredOne('nats', instance, event.createdAt, now);
    }
  }

  /**
   * Publishes a message its stream refused again, a few times with backoff, in place: retrying the whole
   * batch would repeat every other instance's messages. false once it is dead-lettered.
   */
  private async retryRefused(
    js: JetStreamClient,
    { event, instance }: RoutedEvent,
    subject: string,
    data: Uint8Array,
    firstReason: unknown,
  ): Promise<boolean> {
    const attempts = this.options.maxRejections ?? 5;
    let reason = firstReason;
    for (let attempt = 2; attempt <= attempts; attempt++) {
      this.options.metrics.retriedOne('nats', instance);
      await sleep(backoffDelay({ baseMs: 100, maxMs: 2_000 }, attempt - 1), this.closing.signal);
      try {
        await js.publish(subject, data, { msgID: event.id });
        return true;
      } catch (error) {
        if (!isStreamRejection(error)) throw error;
        reason = error;
      }
    }
    const message = `JetStream refused the message ${attempts} times: ${String((reason as Error).message)}`;
    await this.options.store.addDeadLetter(NATS_SUBSCRIPTION, event, message, attempts);
    this.options.metrics.deadLetteredOne('nats', instance);
    this.options.logger.warn(
      { eventId: event.id, instanceId: instance.id, error: message },
      'NATS event dead-lettered',
    );
    return false;
  }

  private async flush(connection: NatsConnection): Promise<void> {
    const ms = this.options.publishTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      connection.flush(),
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`NATS flush timed out after ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}
