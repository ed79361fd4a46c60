/**
 * The webhook sink. Subscription `sink-webhook` reads the log and hands each deliverable event (one per
 * target: the instance's webhookUrl, and WEBHOOK_GLOBAL_URL when set) to the dispatcher, whose queues keep a
 * position in the log rather than copies of events (dispatcher.ts). The subscription's lease makes one
 * process in a cluster the sender; it follows CLUSTER_LEASE_MS, so webhooks resume as fast as instances do
 * after a node fails. Around it: what the API shows of each queue (state, how far behind, why), rewinds
 * (replays.ts), and the dead letters of refused or expired events.
 */
import type { Logger } from 'pino';
import { instanceIdOfStream } from '../../domain/events.ts';
import { ZapwireError } from '../../domain/errors.ts';
import type {
  DeadLetter,
  EventStore,
  RecordedEvent,
  Subscription,
  SubscriptionOptions,
} from '../../store/port.ts';
import { START, type Checkpoint } from '../../store/port.ts';
import { justBefore } from '../../store/checkpoint.ts';
import type { SqlDatabase } from '../../store/sql.ts';
import type { ConfigTimeline } from '../config-timeline.ts';
import type { SinkDirectory } from '../directory.ts';
import type { MetricsRegistry } from '../../metrics.ts';
import type { SinkMetrics } from '../metrics.ts';
import { DEFAULT_PAYLOAD, type PayloadRenderer } from '../payload.ts';
import { startSinkSubscription, type RoutedEvent } from '../subscription.ts';
import { DEFAULT_OUTAGE_POLICY, type OutagePolicy } from './attempt-policy.ts';
import { BacklogReader } from './backlog.ts';
import { deliveriesOf, type Delivery, type DeliveryRules } from './delivery.ts';
import {
  DEFAULT_PIPELINE,
  GLOBAL_WEBHOOK_DEAD_LETTERS,
  WEBHOOK_SUBSCRIPTION,
  WebhookDispatcher,
  deadLetterSubscriptionOf,
  type InstanceLogLine,
  type QueueSnapshot,
  type SecretLookup,
} from './dispatcher.ts';
import { QueueStore, type DeliveryTarget, type QueueState } from './queue-store.ts';
import { WebhookReplays, type ReplayView } from './replays.ts';
import { WebhookSender } from './sender.ts';

export { WEBHOOK_SUBSCRIPTION, GLOBAL_WEBHOOK_DEAD_LETTERS } from './dispatcher.ts';
export type { ReplayView } from './replays.ts';

/** The webhook sink's settings: src/config.ts `webhook` (WEBHOOK_*), passed whole; every one optional. */
export interface WebhookSettings {
  /** WEBHOOK_GLOBAL_URL: receives every instance's subscribed events, besides the instance's own webhook. */
  readonly globalUrl?: string | undefined;
  /** WEBHOOK_GLOBAL_SECRET: signs global webhook bodies; without it they go unsigned. */
  readonly globalSecret?: string | undefined;
  readonly timeoutMs?: number;
  readonly backoffBaseMs?: number;
  readonly probeMaxMs?: number;
  readonly maxAgeMs?: number;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS (default true): false keeps instance webhooks on public addresses. */
  readonly allowPrivateNetworks?: boolean;
  /** WEBHOOK_BATCH_MAX: events per POST (a JSON array) when several wait in one queue. Default 1. */
  readonly batchMax?: number;
  /** WEBHOOK_PIPELINE: requests in flight per queue, started in log order. Default 8. */
  readonly pipeline?: number;
  /** Dead letters older than this are pruned (WEBHOOK_RETENTION_DEAD_HOURS). Default 30 days. */
  readonly deadRetentionMs?: number;
  /** WEBHOOK_MAX_DEAD: dead letters kept per instance. Default 1 000. */
  readonly maxDead?: number;
  /** WEBHOOK_REDELIVER_PER_MINUTE: redeliveries and replays an instance may ask for per minute. Default 30. */
  readonly redeliverPerMinute?: number;
  /** WEBHOOK_CA_FILE's certificates (PEM), trusted beside the system's roots. */
  readonly extraCaCertificates?: readonly string[] | undefined;
  /** Requests in flight across all webhook queues. Default 64. */
  readonly concurrency?: number;
  /** How long the reader waits for a batch's deliveries before the slow queues read on their own. Default 250 ms. */
  readonly directWaitMs?: number;
}

export interface WebhookSinkOptions {
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly timeline: ConfigTimeline;
  readonly directory?: SinkDirectory;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  readonly settings: WebhookSettings;
  readonly secretOf: SecretLookup;
  /** Builds the request body (the profile's shape). Default zapwire's envelope. */
  readonly payload?: PayloadRenderer;
  /** Lines in the instance's own log (a receiver down, dead letters capped). Default: the process log only. */
  readonly instanceLog?: InstanceLogLine;
  readonly subscription?: Partial<SubscriptionOptions>;
  /** The clock (tests move it past WEBHOOK_MAX_AGE_HOURS). */
  readonly now?: () => number;
}

/** The outage policy of the settings (defaults where unset). */
export function outagePolicyOf(settings: WebhookSettings): OutagePolicy {
  return {
    timeoutMs: settings.timeoutMs ?? DEFAULT_OUTAGE_POLICY.timeoutMs,
    probeBaseMs: settings.backoffBaseMs ?? DEFAULT_OUTAGE_POLICY.probeBaseMs,
    probeMaxMs: settings.probeMaxMs ?? DEFAULT_OUTAGE_POLICY.probeMaxMs,
    maxAgeMs: settings.maxAgeMs ?? DEFAULT_OUTAGE_POLICY.maxAgeMs,
  };
}

/** What the API shows of one queue (GET /instance/:id/webhook). */
export interface WebhookQueueView {
  readonly target: DeliveryTarget;
  /** Where the next attempt goes (the global URL is shown to the admin only). */
  readonly url: string | null;
  readonly state: QueueState;
  /** Paused: since when the receiver is down; refusing: since when events are refused. */
  readonly since: Date | null;
  /** In words: why the queue is not delivering, or null. */
  readonly reason: string | null;
  /** `live`: fed by the log's reader; `catching-up`: reading its backlog from the log. */
  readonly mode: 'live' | 'catching-up';
  /** Events not delivered yet; with `behindExact` false, at least this many. */
  readonly behind: number;
  readonly behindExact: boolean;
  readonly oldestUndeliveredAt: Date | null;
  readonly lastError: string | null;
  readonly lastStatusCode: number | null;
  readonly lastAttemptAt: Date | null;
  readonly lastDeliveredAt: Date | null;
  readonly nextProbeAt: Date | null;
  /** Every event of the queue at or before this log position is delivered or dead-lettered. */
  readonly position: string;
}

export interface WebhookStatus {
  readonly queues: readonly WebhookQueueView[];
  /** Dead letters kept for the instance (refused or expired events). */
  readonly deadLetters: number;
  readonly replays: readonly ReplayView[];
}

export interface ReplayBounds {
  /** A log position (exclusive) or an ISO time (events stored at or after it). */
  readonly from: string;
  /** A log position or an ISO time (inclusive); default: the newest event now. */
  readonly to?: string;
}

export interface WebhookApi {
  status(instanceId: string): Promise<WebhookStatus>;
  /** The instance's dead letters (both targets), newest first. */
  deadLetters(instanceId: string, query?: { before?: string; limit?: number }): Promise<DeadLetter[]>;
  /** One of the instance's webhook dead letters; undefined when it is not one. */
  deadLetter(instanceId: string, id: string): Promise<DeadLetter | undefined>;
  /**
   * Sends a dead-lettered event again, to the instance's current webhook URL (or the global webhook, for a
   * dead letter of it), and removes the dead letter (a refusal records it again). undefined when the dead
   * letter is not one of this instance's webhooks.
   */
  redeliver(instanceId: string, deadLetterId: string, requestedBy: string): Promise<ReplayView | undefined>;
  /** Sends a range of the instance's events again (rate-limited per instance). */
  replay(instanceId: string, bounds: ReplayBounds, requestedBy: string): Promise<ReplayView>;
  replays(instanceId: string): Promise<ReplayView[]>;
  cancelReplay(instanceId: string, replayId: string): Promise<ReplayView | undefined>;
}

export class WebhookSink implements WebhookApi {
  readonly dispatcher: WebhookDispatcher;
  readonly replayer: WebhookReplays;
  private readonly sender: WebhookSender;
  private readonly queueStore: QueueStore;
  private readonly readerRules: DeliveryRules;
  private subscription: Subscription | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Redeliveries and replays per instance in the current minute. */
  private readonly requests = new Map<string, { windowStart: number; count: number }>();
  /** Instances that got dead letters since the last cap check. */
  private readonly deadSince = new Set<string>();

  constructor(private readonly options: WebhookSinkOptions) {
    const settings = options.settings;
    const policy = outagePolicyOf(settings);
    this.sender = new WebhookSender({
      allowPrivateNetworks: settings.allowPrivateNetworks ?? true,
      pipelining: settings.pipeline ?? DEFAULT_PIPELINE,
      ...(settings.extraCaCertificates ? { extraCaCertificates: settings.extraCaCertificates } : {}),
    });
    this.queueStore = new QueueStore(options.db);
    const payload = options.payload ?? DEFAULT_PAYLOAD;
    this.readerRules = { payload, globalUrl: settings.globalUrl };
    // A queue reading its backlog sends to the URL in force now (delivery.ts, DeliveryRules.currentUrl).
    const backlogRules: DeliveryRules = {
      payload,
      globalUrl: settings.globalUrl,
      currentUrl: (instanceId) => options.timeline.peek(instanceId)?.sinks.webhookUrl,
    };
    const store = this.deadLetterCounting(options.store);
    this.dispatcher = new WebhookDispatcher({
      store,
      queues: this.queueStore,
      backlog: new BacklogReader(options.store, backlogRules, options.directory, options.logger),
      sender: this.sender,
      metrics: options.metrics,
      logger: options.logger,
      policy,
      secretOf: options.secretOf,
      settings,
      ...(options.instanceLog ? { instanceLog: options.instanceLog } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    this.replayer = new WebhookReplays({
      db: options.db,
      store,
      rules: backlogRules,
      directory: options.directory,
      sender: this.sender,
      secretOf: options.secretOf,
      policy,
      logger: options.logger,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  /** The store, with a note of which instances get dead letters (for WEBHOOK_MAX_DEAD). */
  private deadLetterCounting(store: EventStore): EventStore {
    const deadSince = this.deadSince;
    return Object.assign(Object.create(store) as EventStore, {
      addDeadLetter: (...args: Parameters<EventStore['addDeadLetter']>) => {
        const instanceId = args[4]?.instanceId;
        if (instanceId) deadSince.add(instanceId);
        return store.addDeadLetter(...args);
      },
    });
  }

  /**
   * Per instance and target, at every scrape: events behind, age of the oldest undelivered event, and
   * whether the receiver is down (1) — from the queues this process works.
   */
  registerMetrics(metrics: Pick<MetricsRegistry, 'registerGauge'>): void {
    const samples = (pick: (state: QueueSnapshot, now: number) => number) => () => {
      const now = Date.now();
      const out: Array<{ labels: Record<string, string>; value: number }> = [];
      for (const { instanceId, target } of this.dispatcher.queueKeys()) {
        const state = this.dispatcher.queueState(instanceId, target);
        if (!state) continue;
        const name = this.options.timeline.peek(instanceId)?.name ?? instanceId;
        out.push({ labels: { instance_id: instanceId, instance: name, target }, value: pick(state, now) });
      }
      return out;
    };
    const labelNames = ['instance_id', 'instance', 'target'];
    metrics.registerGauge({
      name: 'zapwire_webhook_queue_behind_events',
      help: 'Webhook events not delivered yet, per instance and target (a lower bound while a queue counts its backlog)',
      labelNames,
      collect: samples((state) => state.behind),
    });
    metrics.registerGauge({
      name: 'zapwire_webhook_queue_oldest_undelivered_seconds',
      help: 'Age of the oldest webhook event not delivered yet, per instance and target (0 when none waits)',
      labelNames,
      collect: samples((state, now) =>
        state.oldestUndelivered ? Math.max(0, (now - state.oldestUndelivered.getTime()) / 1000) : 0,
      ),
    });
    metrics.registerGauge({
      name: 'zapwire_webhook_queue_paused',
      help: '1 while the webhook receiver is down (the queue pauses and probes it), per instance and target',
      labelNames,
      collect: samples((state) => (state.health.state === 'paused' ? 1 : 0)),
    });
  }

  start(): Subscription {
    this.subscription = startSinkSubscription({
      store: this.options.store,
      name: WEBHOOK_SUBSCRIPTION,
      timeline: this.options.timeline,
      logger: this.options.logger,
      subscription: {
        ...this.options.subscription,
        // The queues are worked by the process holding the lease, and only while it does.
        onActive: (active) => this.activate(active),
      },
      handle: (routed, batch) => this.enqueue(routed, batch),
    });
    this.pruneTimer = setInterval(() => {
      this.prune().catch((error: unknown) => {
        this.options.logger.warn({ err: error }, 'webhook: pruning the dead letters failed');
      });
    }, 60_000);
    this.pruneTimer.unref();
    return this.subscription;
  }

  /**
   * The lease came (start working the queues) or went. When this process stops, the queues' positions are
   * written before the lease is given back, so the next holder resumes exactly there (a clean hand-over
   * repeats nothing); when the lease was lost, another process holds the queues already: cut what is in
   * flight and write nothing more.
   */
  private activate(active: boolean): Promise<void> | undefined {
    if (this.stopping) return active ? undefined : this.dispatcher.stop(true);
    if (active) {
      void this.dispatcher.start();
      void this.replayer
        .start()
        .catch((error: unknown) =>
          this.options.logger.error({ err: error }, 'webhook: cannot resume the replays'),
        );
      return undefined;
    }
    void this.replayer.stop();
    return this.dispatcher.stop(false);
  }

  /** Retention and WEBHOOK_MAX_DEAD. Returns the dead letters removed. */
  async prune(now = new Date()): Promise<number> {
    const retention = this.options.settings.deadRetentionMs ?? 30 * 24 * 3600_000;
    const subscriptions = [WEBHOOK_SUBSCRIPTION, GLOBAL_WEBHOOK_DEAD_LETTERS];
    let removed = await this.options.store.pruneDeadLetters(
      subscriptions,
      new Date(now.getTime() - retention),
    );
    const max = this.options.settings.maxDead ?? 1_000;
    for (const instanceId of [...this.deadSince]) {
      this.deadSince.delete(instanceId);
      const capped = await this.options.store.capDeadLetters(subscriptions, instanceId, max);
      removed += capped;
      if (capped > 0) {
        this.options.instanceLog?.(
          instanceId,
          'error',
          `webhook: more than ${max} dead letters; the oldest ${capped} were removed (WEBHOOK_MAX_DEAD)`,
          { sink: 'webhook', removed: capped },
        );
      }
    }
    return removed;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.pruneTimer);
    await this.subscription?.stop();
    await this.dispatcher.stop(true);
    await this.replayer.stop();
    this.sender.close();
  }

  private async enqueue(routed: readonly RoutedEvent[], batch: readonly RecordedEvent[]): Promise<void> {
    const deleted = new Set(
      batch
        .filter((e) => e.type === 'InstanceDeleted')
        .map((e) => instanceIdOfStream(e.stream))
        .filter((id): id is string => id !== undefined),
    );
    const deliveries: Delivery[] = [];
    for (const { event, name, instance } of routed) {
      if (deleted.has(instance.id)) continue;
      // A queue reading its own backlog will read this event itself: no body to render for it here.
      const takes = (target: DeliveryTarget): boolean =>
        this.dispatcher.takes(instance.id, target, event.position);
      deliveries.push(...(await deliveriesOf(this.readerRules, event, name, instance, takes)));
    }
    for (const instanceId of deleted) await this.forgetInstance(instanceId);
    await this.dispatcher.accept(deliveries);
  }

  async status(instanceId: string): Promise<WebhookStatus> {
    const stored = new Map((await this.queueStore.ofInstance(instanceId)).map((r) => [r.target, r]));
    const settings = this.options.timeline.peek(instanceId)?.sinks;
    const targets: DeliveryTarget[] = [];
    if (settings?.webhookUrl || stored.has('instance')) targets.push('instance');
    if (this.options.settings.globalUrl || stored.has('global')) targets.push('global');
    const queues: WebhookQueueView[] = [];
    for (const target of targets) {
      await this.dispatcher.countBacklog(instanceId, target).catch(() => undefined);
      const live = this.dispatcher.queueState(instanceId, target);
      const record = stored.get(target);
      const health = live?.health ?? record;
      const state: QueueState = health?.state ?? 'delivering';
      const since = health?.since ?? null;
      const url =
        live?.url ??
        (target === 'global' ? (this.options.settings.globalUrl ?? null) : (settings?.webhookUrl ?? null));
      queues.push({
        target,
        url,
        state,
        since,
        reason: reasonOf(state, since, health?.lastError, live),
        mode:
          (live?.mode ?? (record && !record.attached ? 'detached' : 'attached')) === 'attached'
            ? 'live'
            : 'catching-up',
        behind: live?.behind ?? 0,
        behindExact: live?.behindExact ?? record === undefined,
        oldestUndeliveredAt: live?.oldestUndelivered ?? null,
        lastError: health?.lastError ?? null,
        lastStatusCode: health?.lastStatusCode ?? null,
        lastAttemptAt: health?.lastAttemptAt ?? null,
        lastDeliveredAt: health?.lastDeliveredAt ?? null,
        nextProbeAt: live?.nextProbeAt ?? null,
        position: live?.settled ?? record?.cursor ?? '',
      });
    }
    const deadLetters = await this.options.store.findDeadLetters({
      subscriptions: [WEBHOOK_SUBSCRIPTION, GLOBAL_WEBHOOK_DEAD_LETTERS],
      instanceId,
      limit: 1_000,
    });
    return { queues, deadLetters: deadLetters.length, replays: await this.replayer.list(instanceId, 5) };
  }

  deadLetters(instanceId: string, query: { before?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return this.options.store.findDeadLetters({
      subscriptions: [WEBHOOK_SUBSCRIPTION, GLOBAL_WEBHOOK_DEAD_LETTERS],
      instanceId,
      ...query,
    });
  }

  async deadLetter(instanceId: string, id: string): Promise<DeadLetter | undefined> {
    const dead = await this.options.store.deadLetter(id);
    const ours = [WEBHOOK_SUBSCRIPTION, GLOBAL_WEBHOOK_DEAD_LETTERS].includes(dead?.subscription ?? '');
    return dead && ours && dead.instanceId === instanceId ? dead : undefined;
  }

  async redeliver(
    instanceId: string,
    deadLetterId: string,
    requestedBy: string,
  ): Promise<ReplayView | undefined> {
    const dead = await this.deadLetter(instanceId, deadLetterId);
    if (!dead) return undefined;
    const target = dead.subscription === deadLetterSubscriptionOf('global') ? 'global' : 'instance';
    this.takeRequest(instanceId);
    const replay = await this.replayer.request(instanceId, {
      after: justBefore(dead.position),
      through: dead.position,
      eventId: dead.eventId,
      target,
      requestedBy,
    });
    await this.options.store.removeDeadLetter(dead.subscription, dead.eventId);
    return replay;
  }

  async replay(instanceId: string, bounds: ReplayBounds, requestedBy: string): Promise<ReplayView> {
    const from = await this.boundOf('from', bounds.from);
    const to = bounds.to === undefined ? undefined : await this.boundOf('to', bounds.to);
    const head = await this.options.store.headPosition();
    this.takeRequest(instanceId);
    return this.replayer.request(instanceId, {
      after: from.position ?? START,
      ...(from.time ? { fromTime: from.time } : {}),
      through: to?.position ?? head,
      ...(to?.time ? { toTime: to.time } : {}),
      requestedBy,
    });
  }

  /** A replay bound: a log position this store can read after, an ISO 8601 time, or (from) "start". */
  private async boundOf(name: 'from' | 'to', value: string): Promise<{ position?: Checkpoint; time?: Date }> {
    if (value === 'start' && name === 'from') return { position: START };
    if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
      const time = new Date(value);
      if (!Number.isNaN(time.getTime())) return { time };
    } else if (/^[\d:]{1,64}$/.test(value)) {
      const readable = await this.options.store.readAll({ after: value as Checkpoint, limit: 1 }).then(
        () => true,
        () => false,
      );
      if (readable) return { position: value as Checkpoint };
    }
    throw new ZapwireError(
      'ZW_ERR_VALIDATION',
      `${name} must be a log position (an envelope's "position", e.g. 00000000000000000742:00000000000000001931), an ISO 8601 time (2026-12-01T12:00:00Z)${name === 'from' ? ' or "start"' : ''}`,
    );
  }

  replays(instanceId: string): Promise<ReplayView[]> {
    return this.replayer.list(instanceId);
  }

  cancelReplay(instanceId: string, replayId: string): Promise<ReplayView | undefined> {
    return this.replayer.cancel(instanceId, replayId);
  }

  /** Counts a redelivery or replay against the instance's allowance for this minute; throws when it is used up. */
  private takeRequest(instanceId: string): void {
    const perMinute = this.options.settings.redeliverPerMinute ?? 30;
    const now = Date.now();
    let window = this.requests.get(instanceId);
    if (!window || now - window.windowStart >= 60_000) {
      window = { windowStart: now, count: 0 };
      this.requests.set(instanceId, window);
      if (this.requests.size > 10_000) this.requests.delete(this.requests.keys().next().value!);
    }
    if (window.count >= perMinute) {
      const retryAfter = Math.max(1, Math.ceil((window.windowStart + 60_000 - now) / 1000));
      throw new ZapwireError(
        'ZW_ERR_RATE_LIMITED',
        `at most ${perMinute} redeliveries and replays per minute for an instance (WEBHOOK_REDELIVER_PER_MINUTE): try again in ${retryAfter} s`,
        undefined,
        retryAfter,
      );
    }
    window.count += 1;
  }

  /** Removes a deleted instance's queues and replays (the runtime calls it when it deletes the instance). */
  async forgetInstance(instanceId: string): Promise<void> {
    await this.dispatcher.forget(instanceId);
    await this.replayer.forget(instanceId);
    void this.options.metrics.forgetInstance(instanceId);
  }
}

function reasonOf(
  state: QueueState,
  since: Date | null,
  lastError: string | undefined,
  live: QueueSnapshot | undefined,
): string | null {
  if (state === 'paused') {
    const behind = live ? `; ${live.behind}${live.behindExact ? '' : '+'} events waiting` : '';
    return `receiver down since ${since?.toISOString() ?? 'unknown'}: ${lastError ?? 'no answer'}${behind}`;
  }
  if (state === 'refusing') return `the receiver refuses events: ${lastError ?? 'refused'}`;
  if (live && live.mode !== 'attached' && live.behind > 0)
    return `catching up: ${live.behind}${live.behindExact ? '' : '+'} events behind`;
  return null;
}
