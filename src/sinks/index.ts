/**
 * The sinks, composed: webhook (always), RabbitMQ (when AMQP_URL is set), NATS (when NATS_URL is set) and
 * the WebSocket hub (always), each an independent reader of the log with its own position, so one failing
 * sink never holds back another. See docs/events.md.
 */
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type {
  Checkpoint,
  DeadLetterRetry,
  EventStore,
  Subscription,
  SubscriptionOptions,
} from '../store/port.ts';
import type { SqlDatabase } from '../store/sql.ts';
import { START } from '../store/port.ts';
import type { AmqpSink } from './amqp.ts';
import { BrokerLag, type SinkLag } from './broker-lag.ts';
import { AMQP_SUBSCRIPTION, NATS_SUBSCRIPTION } from './broker-names.ts';
import { processLogOnly, type InstanceLogWriter } from './instance-log.ts';
import { sleep } from './backoff.ts';
import { ConfigTimeline } from './config-timeline.ts';
import { CachedSinkDirectory, type SinkDirectory } from './directory.ts';
import { MetricsRegistry } from '../metrics.ts';
import { SinkMetrics } from './metrics.ts';
import type { NatsSink } from './nats.ts';
import { payloadRenderer, type PayloadProfile } from './payload.ts';
import {
  GLOBAL_WEBHOOK_DEAD_LETTERS,
  WEBHOOK_SUBSCRIPTION,
  WebhookSink,
  type WebhookApi,
  type WebhookSettings,
} from './webhook/index.ts';
import { WebSocketHub } from './websocket/hub.ts';

/** The sinks' migrations (the webhook's queue positions and replays), for the shared migration runner. */
export const SINK_MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));

/**
 * The settings the sinks read. Structurally a subset of src/config.ts `Config`, so the composition root
 * can pass its config object as is.
 */
export interface SinksConfig {
  /**
   * API_COMPAT: the body webhook, RabbitMQ and NATS messages take (`evolution-go`: Evolution GO's webhook
   * shape). Default zapwire's envelope. The WebSocket always sends the envelope.
   */
  readonly apiCompat?: PayloadProfile;
  /** QRCODE_MAX_COUNT, shown in Evolution GO's QRCode payload. */
  readonly qrCodeMaxCount?: number;
  readonly amqpUrl?: string | undefined;
  readonly amqpExchange?: string;
  readonly natsUrl?: string | undefined;
  readonly natsSubjectPrefix?: string;
  readonly webhook?: WebhookSettings;
  /**
   * `leaseMs` (CLUSTER_LEASE_MS): how long a sink's lease lasts without renewal. When the node sending a
   * sink's events dies, another one takes over after this long, as it takes over the instances.
   */
  readonly cluster?: { readonly leaseMs?: number };
  readonly websocket?: {
    readonly maxBufferedBytes?: number;
    /** WS_MAX_CONNECTIONS_PER_KEY: sockets one API key (admin, or an instance token) may hold at once. */
    readonly maxConnectionsPerKey?: number;
    /** WS_MAX_REPLAYS_PER_KEY: `?from=` replays one API key may run at once. */
    readonly maxReplaysPerKey?: number;
  };
  /** How long a directory answer (the webhook secret) is reused. Default 5 s. */
  readonly directoryCacheMs?: number;
  /** Node.js process metrics in the registry the sinks make when they are given none. Default true. */
  readonly processMetrics?: boolean;
  /** Overrides for every sink subscription (tests tune polling and batch sizes). */
  readonly subscription?: Partial<SubscriptionOptions>;
}

export interface StartSinksOptions {
  readonly store: EventStore;
  /** Holds the webhook's queue positions and replays (run SINK_MIGRATIONS_DIR first). */
  readonly db: SqlDatabase;
  readonly directory: SinkDirectory;
  readonly config: SinksConfig;
  readonly logger: Logger;
  /** The process's registry, served on /metrics. Default: one of the sinks' own. */
  readonly metrics?: MetricsRegistry;
  /** Lines for an instance's own log (cap reached, unroutable message). Default: the process log only. */
  readonly instanceLog?: InstanceLogWriter;
  /** The clock the webhook judges events' age by (tests move it). Default Date.now. */
  readonly now?: () => number;
}

export interface SinksStatus {
  readonly rabbitmq: { readonly enabled: boolean; readonly connected: boolean };
  readonly nats: { readonly enabled: boolean; readonly connected: boolean };
  readonly websocket: { readonly clients: number };
}

export interface Sinks {
  readonly webhook: WebhookApi;
  readonly websocketHub: WebSocketHub;
  /** The registry the sinks count in (the one given to startSinks, or their own). */
  readonly metrics: MetricsRegistry;
  /** The store subscriptions, by sink (for waitFor in tests and health). */
  readonly subscriptions: {
    readonly webhook: Subscription;
    readonly rabbitmq?: Subscription;
    readonly nats?: Subscription;
  };
  /**
   * How far each sink is behind for the instance, as this process works them (health reads it): its own
   * webhook queue, and the brokers' subscriptions while they run here. Sinks that are not behind are left out.
   */
  sinkLags(instanceId: string): SinkLag[];
  /** Drops cached directory answers (call after rotating an instance's webhook secret). */
  invalidate(instanceId?: string): void;
  /** Removes a deleted instance's webhook deliveries and metric series. */
  forgetInstance(instanceId: string): Promise<void>;
  status(): SinksStatus;
  stop(): Promise<void>;
}

export async function startSinks(options: StartSinksOptions): Promise<Sinks> {
  const { store, db, config, logger } = options;
  const log = logger.child({ component: 'sinks' });
  const instanceLog = options.instanceLog ?? processLogOnly(log);
  const registry = options.metrics ?? new MetricsRegistry({ processMetrics: config.processMetrics ?? true });
  const metrics = new SinkMetrics(registry);
  const directory = new CachedSinkDirectory(options.directory, config.directoryCacheMs ?? 5_000);
  const timeline = (): ConfigTimeline => new ConfigTimeline(store, directory, log);
  // Every sink's lease follows CLUSTER_LEASE_MS: after a node dies its sinks resume as its instances do.
  const subscription: Partial<SubscriptionOptions> = {
    leaseMs: config.cluster?.leaseMs,
    ...config.subscription,
  };
  const payload = payloadRenderer(config.apiCompat ?? 'default', {
    ...(config.qrCodeMaxCount !== undefined ? { qrCodeMaxCount: config.qrCodeMaxCount } : {}),
  });

  const w = config.webhook ?? {};
  const globalSecret = w.globalSecret ?? null;
  const webhook = new WebhookSink({
    store,
    db,
    timeline: timeline(),
    directory,
    metrics,
    logger: log.child({ sink: 'webhook' }),
    settings: w,
    payload,
    instanceLog: (instanceId, level, message, context) =>
      void instanceLog(instanceId, level, message, context).catch(() => undefined),
    subscription,
    ...(options.now ? { now: options.now } : {}),
    secretOf: async (instanceId, target) => {
      if (target === 'global') return globalSecret;
      return (await directory.get(instanceId))?.webhookSecret;
    },
  });

  webhook.registerMetrics(registry);

  // The brokers' client libraries load only when their sink is configured (memory of an idle server).
  const compare = (a: Checkpoint, b: Checkpoint): number => store.compareCheckpoints(a, b);
  const amqpLag = config.amqpUrl ? new BrokerLag('rabbitmq', compare) : undefined;
  const natsLag = config.natsUrl ? new BrokerLag('nats', compare) : undefined;
  const brokerLags = [amqpLag, natsLag].filter((lag): lag is BrokerLag => lag !== undefined);
  const amqp = config.amqpUrl
    ? new (await import('./amqp.ts')).AmqpSink({
        url: config.amqpUrl,
        ...(config.amqpExchange ? { exchange: config.amqpExchange } : {}),
        store,
        timeline: timeline(),
        metrics,
        payload,
        instanceLog,
        logger: log.child({ sink: 'rabbitmq' }),
        ...(subscription ? { subscription } : {}),
        ...(amqpLag ? { lag: amqpLag } : {}),
      })
    : undefined;
  const nats = config.natsUrl
    ? new (await import('./nats.ts')).NatsSink({
        url: config.natsUrl,
        ...(config.natsSubjectPrefix ? { prefix: config.natsSubjectPrefix } : {}),
        store,
        timeline: timeline(),
        metrics,
        payload,
        logger: log.child({ sink: 'nats' }),
        ...(subscription ? { subscription } : {}),
        ...(natsLag ? { lag: natsLag } : {}),
      })
    : undefined;
  const websocketHub = new WebSocketHub({
    store,
    metrics,
    logger: log.child({ sink: 'websocket' }),
    ...(config.websocket?.maxBufferedBytes ? { maxBufferedBytes: config.websocket.maxBufferedBytes } : {}),
    ...(config.websocket?.maxConnectionsPerKey
      ? { maxConnectionsPerPrincipal: config.websocket.maxConnectionsPerKey }
      : {}),
    ...(config.websocket?.maxReplaysPerKey
      ? { maxReplaysPerPrincipal: config.websocket.maxReplaysPerKey }
      : {}),
    ...(subscription?.pollIntervalMs ? { pollIntervalMs: subscription.pollIntervalMs } : {}),
  });

  await websocketHub.start();
  const fresh = new Set<string>();
  for (const name of [WEBHOOK_SUBSCRIPTION, AMQP_SUBSCRIPTION, NATS_SUBSCRIPTION]) {
    if ((await store.readCheckpoint(name)) === START) fresh.add(name);
  }
  const subscriptions = {
    webhook: await webhook.start(),
    ...(amqp ? { rabbitmq: amqp.start() } : {}),
    ...(nats ? { nats: nats.start() } : {}),
  };
  if (subscriptions.rabbitmq) amqpLag?.attach(subscriptions.rabbitmq);
  if (subscriptions.nats) natsLag?.attach(subscriptions.nats);
  // The instances' appends in this process, for the brokers' lag per instance (only when one is set up).
  const unwatchAppends =
    brokerLags.length > 0
      ? store.onAppended((result) => {
          for (const event of result.events) for (const lag of brokerLags) lag.appended(event);
        })
      : () => undefined;
  // A sink seen for the first time starts at the end of the log, as of when its subscription is created
  // (asynchronously). Wait for that, so events appended once startSinks resolved are all delivered. Bounded:
  // a subscription that exists but never moved may have a backlog to work through first.
  await Promise.all(
    Object.values(subscriptions)
      .filter((s) => fresh.has(s.name))
      .map((s) => Promise.race([s.caughtUp, sleep(5_000)])),
  );
  metrics.setConnected('rabbitmq', false);
  metrics.setConnected('nats', false);
  const unregisterRetries = registerRetries(store, webhook, amqp, nats);
  log.info(
    {
      webhookGlobal: Boolean(w.globalUrl),
      rabbitmq: Boolean(amqp),
      nats: Boolean(nats),
      payload: payload.profile,
    },
    'sinks started',
  );

  let stopped: Promise<void> | undefined;
  return {
    webhook,
    websocketHub,
    metrics: registry,
    subscriptions,
    sinkLags(instanceId) {
      const lags: SinkLag[] = [];
      const queue = webhook.dispatcher.queueState(instanceId, 'instance');
      if (queue && queue.behind > 0)
        lags.push({
          sink: 'webhook',
          behind: queue.behind,
          oldestUndeliveredAt: queue.oldestUndelivered,
          why:
            queue.health.state === 'paused'
              ? `receiver down${queue.health.lastError ? `: ${queue.health.lastError}` : ''}`
              : null,
        });
      for (const lag of brokerLags) {
        const behind = lag.lagOf(instanceId);
        if (behind) lags.push(behind);
      }
      return lags;
    },
    invalidate: (instanceId) => directory.invalidate(instanceId),
    async forgetInstance(instanceId) {
      directory.invalidate(instanceId);
      for (const lag of brokerLags) lag.forget(instanceId);
      await webhook.forgetInstance(instanceId);
      await metrics.forgetInstance(instanceId);
    },
    status: () => ({
      rabbitmq: { enabled: amqp !== undefined, connected: amqp?.connected ?? false },
      nats: { enabled: nats !== undefined, connected: nats?.connected ?? false },
      websocket: { clients: websocketHub.clientCount },
    }),
    stop() {
      stopped ??= (async () => {
        for (const unregister of unregisterRetries) unregister();
        unwatchAppends();
        await Promise.allSettled([webhook.stop(), amqp?.stop(), nats?.stop(), websocketHub.stop()]);
        log.info('sinks stopped');
      })();
      return stopped;
    },
  };
}

/**
 * How each sink sends a dead letter again (POST /admin/dead-letters/:id/retry): the brokers publish the
 * event again; the webhook queues a redelivery to the target that refused it (the instance's webhook, or
 * the global one). Returns the functions that unregister them.
 */
function registerRetries(
  store: EventStore,
  webhook: WebhookSink,
  amqp: AmqpSink | undefined,
  nats: NatsSink | undefined,
): Array<() => void> {
  const redeliver: DeadLetterRetry = async (dead, _event, requestedBy) => {
    const replay = dead.instanceId
      ? await webhook.redeliver(dead.instanceId, dead.id, requestedBy)
      : undefined;
    if (!replay) {
      return {
        outcome: 'failed',
        message: `dead letter ${dead.id} is not a webhook delivery of an instance`,
      };
    }
    return {
      outcome: 'queued',
      message: `queued as webhook replay ${replay.id} to the ${replay.target} webhook; GET /instance/${replay.instanceId}/webhook shows how it went`,
      detail: { replayId: replay.id, instanceId: replay.instanceId, target: replay.target },
    };
  };
  return [
    store.onRetry(WEBHOOK_SUBSCRIPTION, redeliver),
    store.onRetry(GLOBAL_WEBHOOK_DEAD_LETTERS, redeliver),
    ...(amqp ? [store.onRetry(AMQP_SUBSCRIPTION, (_dead, event) => amqp.retry(event))] : []),
    ...(nats ? [store.onRetry(NATS_SUBSCRIPTION, (_dead, event) => nats.retry(event))] : []),
  ];
}

export type { SinkDirectory, InstanceSinkConfig } from './directory.ts';
export type { SinkEnvelope } from './envelope.ts';
export { SINK_ENVELOPE_SCHEMA, buildEnvelope, serializeEnvelope } from './envelope.ts';
export { DEFAULT_PAYLOAD, payloadRenderer, type PayloadProfile, type PayloadRenderer } from './payload.ts';
export { signPayload, signatureHeaders, verifySignature } from './webhook/signature.ts';
export type { DeliveryTarget } from './webhook/queue-store.ts';
export type {
  WebhookApi,
  WebhookSettings,
  WebhookStatus,
  WebhookQueueView,
  ReplayView,
} from './webhook/index.ts';
export { WS_CLOSE, type WebSocketHub } from './websocket/hub.ts';
export type { SinkMetrics } from './metrics.ts';
