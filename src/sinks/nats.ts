/**
 * The NATS sink (subscription `sink-nats`): each deliverable event of an instance with natsEnable goes to
 * subject `<prefix>.<instanceName>.<EVENT>` (prefix default `zapwire`). Where a JetStream stream covers the
 * subject (looked up with `jsm.streams.find`, cached briefly) the event is published through JetStream with
 * msgID = event id, so the stream drops repeats inside its duplicate window, and the checkpoint moves after
 * the stream's acks; otherwise it is a core publish (header `Nats-Msg-Id` set all the same) and the batch
 * ends with a flush: the server has it, and core NATS promises nothing beyond that.
 *
 * An outage is not a failure of the event: a server that cannot be reached, a lost connection, a timeout,
 * no responders, or a stream that refuses for a while (full with `discard: new`: JetStream answers 503)
 * pause the sink, which keeps its position and publishes again from the first message not acknowledged,
 * with a capped backoff, forever. Only what the server says it will never accept is dead-lettered and
 * skipped (isPermanentRefusal): a message larger than the server's max_payload or the stream's
 * max_msg_size, or another JetStream 4xx answer.
 */
import {
  ErrorCode,
  connect,
  headers as natsHeaders,
  type JetStreamManager,
  type NatsConnection,
  type NatsError,
} from 'nats';
import type { Logger } from 'pino';
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
import { natsSubject, wants } from './routing.ts';
import { startSinkSubscription, type RoutedEvent } from './subscription.ts';
import { NATS_SUBSCRIPTION } from './broker-names.ts';

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
  /** Between two tries of a batch the server did not take (down, a stream full). Default 0.5 s → 30 s. */
  readonly retry?: BackoffPolicy;
  readonly subscription?: Partial<SubscriptionOptions>;
  /** Follows how far the sink is behind for each instance (health). */
  readonly lag?: BrokerLag;
}

/**
 * What the server says it will never accept, so the event is dead-lettered: a message larger than the
 * server's max_payload (the client refuses it), or a JetStream answer in the 4xx range other than 408 and
 * 429 (e.g. 400, err_code 10054: larger than the stream's max_msg_size). Everything else is an outage:
 * no connection, a timeout, no responders, a full stream (503, err_code 10077: maximum messages, bytes or
 * messages per subject exceeded), a storage failure.
 */
export function isPermanentRefusal(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, api_error: api } = error as NatsError;
  if (code === ErrorCode.MaxPayloadExceeded) return true;
  return api !== undefined && api.code >= 400 && api.code < 500 && api.code !== 408 && api.code !== 429;
}

const NATS = { kind: 'nats', name: 'NATS' } as const;

interface Outgoing {
  readonly item: RoutedEvent;
  readonly subject: string;
  readonly data: Uint8Array;
}

/** How one message of a try ended. */
type Outcome = 'sent' | 'core' | { readonly error: unknown };

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
      subscription: {
        ...this.options.subscription,
        onActive: (active) => this.options.lag?.activeChanged(active),
      },
      handle: (routed) => {
        this.options.lag?.learned(routed);
        return this.publish(routed);
      },
    });
    // Connect now rather than on the first event, so that event does not pay for the handshake.
    this.ready().catch(() => undefined);
    return this.subscription;
  }

  async stop(): Promise<void> {
    // A batch paused by an outage stops retrying (it is not acknowledged: sent again on the next start).
    this.closing.abort();
    await this.subscription?.stop();
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

  /**
   * Publishes a dead-lettered event again (POST /admin/dead-letters/:id/retry), judged by the configuration
   * as of the event. Taken: the dead letter goes; refused again for good: it stays, with the new error.
   */
  retry(event: RecordedEvent): Promise<DeadLetterRetryResult> {
    return sendAgain(event, {
      sink: { name: 'NATS', subscription: NATS_SUBSCRIPTION },
      store: this.options.store,
      message: async (routed) => (await this.outgoing([routed], { all: true }))[0],
      publish: (message) => this.publishOutgoing([message], { once: true }),
      where: (message) => `(subject ${message.subject})`,
    });
  }

  private async publish(routed: readonly RoutedEvent[]): Promise<void> {
    const outgoing = await this.outgoing(routed);
    if (outgoing.length > 0) await this.publishOutgoing(outgoing);
  }

  /** The batch's messages for NATS, in order (events the profile has no message for are left out). */
  private async outgoing(
    routed: readonly RoutedEvent[],
    { all = false }: { all?: boolean } = {},
  ): Promise<Outgoing[]> {
    const selected = all ? routed : routed.filter((r) => wants(r.instance.sinks, 'nats', r.name));
    const out: Outgoing[] = [];
    for (const item of selected) {
      const { event, name, instance } = item;
      const body = await (this.options.payload ?? DEFAULT_PAYLOAD).render(event, instance, name);
      if (body === undefined) continue;
      out.push({
        item,
        subject: natsSubject(this.prefix, instance.name, name),
        data: new TextEncoder().encode(body),
      });
    }
    return out;
  }

  /**
   * Publishes until the server took every message (or refused one for good: dead-lettered). After an outage
   * it probes with the first message not acknowledged, with a capped backoff, until the server takes it, then
   * sends the rest; until stop() (then it throws: the batch is not acknowledged). `once`: one try, throwing
   * on an outage. Resolves with the event ids it dead-lettered.
   */
  private async publishOutgoing(outgoing: readonly Outgoing[], { once = false } = {}): Promise<Set<string>> {
    const { logger, metrics } = this.options;
    const refused = new Set<string>();
    await sendPausing(outgoing, (batch) => this.publishOnce(batch, refused), {
      sink: NATS,
      logger,
      metrics,
      retry: this.options.retry,
      signal: this.closing.signal,
      once,
      onPause: (why) => this.options.lag?.pauseChanged(why),
    });
    const now = Date.now();
    for (const { item } of outgoing) {
      if (!refused.has(item.event.id)) metrics.deliveredOne('nats', item.instance, item.event.createdAt, now);
    }
    return refused;
  }

  /**
   * One try: publishes the messages in order (JetStream acks awaited together, core ones flushed at the
   * end). Messages refused for good are dead-lettered. Resolves with how many messages from the first on are
   * settled (taken or dead-lettered), and why the next one is not (undefined: all are).
   */
  private async publishOnce(
    outgoing: readonly Outgoing[],
    refused: Set<string>,
  ): Promise<{ settled: number; failure?: unknown }> {
    let connection: NatsConnection;
    try {
      connection = await this.ready();
    } catch (error) {
      return { settled: 0, failure: error };
    }
    const js = connection.jetstream({ timeout: this.options.publishTimeoutMs ?? 10_000 });
    const outcomes: Array<Promise<Outcome>> = [];
    for (const { item, subject, data } of outgoing) {
      const { event } = item;
      let stream: string | null;
      try {
        stream = await this.streamFor(connection, subject);
      } catch (error) {
        outcomes.push(Promise.resolve({ error }));
        break;
      }
      if (stream) {
        outcomes.push(
          js.publish(subject, data, { msgID: event.id }).then(
            () => 'sent' as const,
            (error: unknown) => ({ error }),
          ),
        );
        continue;
      }
      try {
        const h = natsHeaders();
        h.set('Nats-Msg-Id', event.id);
        connection.publish(subject, data, { headers: h });
        outcomes.push(Promise.resolve('core' as const));
      } catch (error) {
        outcomes.push(Promise.resolve({ error }));
      }
    }
    const results = await Promise.all(outcomes);
    const flushed = results.includes('core')
      ? await this.flush(connection).then(
          () => undefined,
          (error: unknown) => error,
        )
      : undefined;
    for (const [index, result] of results.entries()) {
      if (result === 'sent') continue;
      if (result === 'core') {
        if (flushed === undefined) continue;
        return { settled: index, failure: flushed };
      }
      if (!isPermanentRefusal(result.error)) return { settled: index, failure: result.error };
      await this.refuse(outgoing[index]!, result.error);
      refused.add(outgoing[index]!.item.event.id);
    }
    return results.length === outgoing.length
      ? { settled: outgoing.length }
      : { settled: results.length, failure: new Error('NATS: the publish was cut short') };
  }

  /** The server will never take this message: dead-lettered (`sink-nats`), counted, logged; the rest goes on. */
  private async refuse({ item, subject }: Outgoing, reason: unknown): Promise<void> {
    const { event, instance } = item;
    const api = (reason as NatsError).api_error;
    const message = `NATS refused the message for good: ${String((reason as Error).message)}${api ? ` (JetStream ${api.code}, err_code ${api.err_code ?? '?'}: ${api.description})` : ''}`;
    await this.options.store.addDeadLetter(NATS_SUBSCRIPTION, event, message, 1, {
      instanceId: instance.id,
      detail: {
        subject,
        reason: 'refused',
        ...(api
          ? { statusCode: api.code, errCode: api.err_code ?? null }
          : { errorCode: (reason as NatsError).code ?? null }),
      },
    });
    this.options.metrics.deadLetteredOne('nats', instance);
    this.options.logger.warn(
      { eventId: event.id, instanceId: instance.id, subject, error: message },
      'NATS event dead-lettered',
    );
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
