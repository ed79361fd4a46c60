/**
 * The runtime: the actor host (actor-host.ts), the commands of the API (commands.ts), WhatsApp traffic
 * with its automatic replies (traffic.ts) and the runtime log (runtime-log.ts), wired together; plus boot
 * (restore every instance, paced) and shutdown (record a `shutdown` close for every live instance).
 */
import type { Logger } from 'pino';
import type { InspectionEvent } from 'xstate';
import type { EventLog, NewEvent } from '../store/port.ts';
import type { WhatsAppConnector } from '../whatsapp/port.ts';
import { signalToMachineEvent, type RoutedSignal } from '../whatsapp/connection-actor.ts';
import { apiStateOf } from '../../machines/instance/index.ts';
import { ActorHost, type LiveSnapshot } from './actor-host.ts';
import { InstanceCommands } from './commands.ts';
import type { RuntimeReadModel } from './read-model.ts';
import { errorMessage, RuntimeLog } from './runtime-log.ts';
import type { InstanceSecrets } from './secrets.ts';
import type { TokenDigests } from '../domain/tokens.ts';
import { AdaptiveConcurrency, FixedConcurrency } from './restore/concurrency.ts';
import { ProcessLoadSignal, type LoadSignal } from './restore/load-signal.ts';
import { RestoreScheduler, type RestoreProgress } from './restore/scheduler.ts';
import { ConnectionRegistry } from './tracking-connector.ts';
import { Traffic } from './traffic.ts';
import { WhatsAppStreams } from './whatsapp-stream.ts';
import { InstanceDeletion } from './deletion.ts';
import { StreamGrowthGuard } from './growth-guard.ts';
import { InstanceRateLimits } from './rate-limit.ts';
import type { InstanceLimits } from '../config.ts';
import type { PendingDeletions } from './pending-deletions.ts';
import type { OutboxIndex } from './outbox/outbox-index.ts';
import { pairedAt } from './outbox/paired-at.ts';
import { SendOutbox } from './outbox/send-outbox.ts';
import { registerOutboxMetrics } from './outbox/metrics.ts';
import { registerRestoreMetrics } from './restore/metrics.ts';
import type { MetricsRegistry } from '../metrics.ts';

/**
 * The settings the runtime reads. Structurally a subset of src/config.ts `Config`, so the composition root
 * passes its config object as is.
 */
export interface RuntimeConfig {
  /** QRCODE_MAX_COUNT: QR codes shown before a pairing attempt gives up. */
  readonly qrCodeMaxCount: number;
  readonly reconnect: { readonly baseMs: number; readonly maxMs: number; readonly userRateLimitMs: number };
  /** Per-instance rate limits and the daily cap of an instance stream's growth; none when absent. */
  readonly instanceLimits?: InstanceLimits;
  /**
   * RESTORE_CONCURRENCY: instances restored (WhatsApp logins) at once: a number, or 'auto', adapting to
   * the event loop's lag and the CPU between 1 and RESTORE_CONCURRENCY_MAX (restore/concurrency.ts).
   */
  readonly restoreConcurrency: number | 'auto';
  readonly restoreConcurrencyMax?: number;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: may an instance's webhook URL name a private address. Default true. */
  readonly webhook?: { readonly allowPrivateNetworks?: boolean };
  /** The outbox: how long a send route waits, the pause after a restriction, sends in flight (SEND_*). */
  readonly outbox: {
    readonly waitMs: number;
    readonly restrictionBackoffMs: number;
    readonly restrictionBackoffMaxMs: number;
    readonly maxInFlight: number;
  };
}

export interface RuntimeOptions {
  /**
   * The log. main.ts hands over the EventStore from openEventLog, whose deleteStream also drops a deleted
   * instance's dead letters (the runtime itself never touches consumers).
   */
  readonly store: EventLog;
  readonly readModel: RuntimeReadModel;
  readonly connector: WhatsAppConnector;
  readonly secrets: InstanceSecrets;
  /** Records of deletes and token rotations until they finish (deletion.ts). */
  readonly pending: PendingDeletions;
  /** How tokens are stored (HMAC under the server pepper). */
  readonly tokens: TokenDigests;
  readonly logger: Logger;
  readonly config: RuntimeConfig;
  /**
   * The one writer of `wa-` streams (default: the runtime's own). The composition root shares it with the
   * sinks' writer of instance log lines, so that a delete closes the stream to both.
   */
  readonly whatsappStreams?: WhatsAppStreams;
  /** The restore plan's load signal (tests); the process's own by default. */
  readonly restoreLoad?: LoadSignal;
  /** The outbox's index in SQL (src/runtime/outbox/outbox-index.ts). */
  readonly outboxIndex: OutboxIndex;
  readonly now?: () => Date;
  /** How long a command waits for the read model (read-your-writes). */
  readonly readYourWritesTimeoutMs?: number;
  /** How old an orphaned name or token reservation must be before a create takes it over (default 60 s). */
  readonly reservationGraceMs?: number;
  /** Called after an instance and its streams are gone (sinks drop its delivery log and metrics). */
  readonly onInstanceDeleted?: (instanceId: string) => Promise<void>;
  /** Receives the XState inspection stream of every instance actor (the visualizer's live feed). */
  readonly inspect?: (instanceId: string, event: InspectionEvent) => void;
  /**
   * Cluster mode (src/cluster): which instances this node owns. With it, `start` restores nothing by
   * itself (the cluster adopts each instance whose lease this node takes) and no socket opens for an
   * instance whose lease this node does not hold.
   */
  readonly ownership?: {
    holds(instanceId: string): boolean;
    /** A new instance was stored: give it a node. */
    place(instanceId: string): Promise<void>;
  };
}

/** Retries of finishing what a crash cut short (1 s, 2 s, … then every minute: about 20 minutes). */
const MAX_FINISH_ATTEMPTS = 25;

/** States a restore settles in (anything but `connecting`). */
const SETTLED = ['created', 'disconnected', 'qr', 'open', 'deleted'];

export class InstanceRuntime {
  /** What the HTTP layer calls. */
  readonly commands: InstanceCommands;
  readonly connections = new ConnectionRegistry();
  /** The outboxes of the instances this node owns (src/runtime/outbox). */
  readonly outbox: SendOutbox;
  private readonly host: ActorHost;
  private readonly traffic: Traffic;
  private readonly log: RuntimeLog;
  private readonly restores: RestoreScheduler;
  private readonly deletion: InstanceDeletion;
  private readonly now: () => Date;
  private stopping = false;
  /** Received WhatsApp events on their way to the log: when each started, per instance (for health). */
  private readonly appending = new Map<string, Map<symbol, number>>();
  private readonly lastAppendLatency = new Map<string, number>();

  constructor(private readonly options: RuntimeOptions) {
    const now = (this.now = options.now ?? (() => new Date()));
    const { config } = options;
    const limits = config.instanceLimits;
    const connection = (id: string) => this.connections.get(id);
    const whatsappStreams = options.whatsappStreams ?? new WhatsAppStreams(options.store);
    this.log = new RuntimeLog(whatsappStreams, options.logger, now);
    this.traffic = new Traffic({ streams: whatsappStreams, log: this.log, connection, now });
    this.restores = new RestoreScheduler({
      restore: (id) => this.restore(id),
      lastActivity: () => options.readModel.lastActivity(),
      concurrency:
        config.restoreConcurrency === 'auto'
          ? new AdaptiveConcurrency({ min: 1, max: config.restoreConcurrencyMax ?? 32 })
          : new FixedConcurrency(config.restoreConcurrency),
      load: options.restoreLoad ?? new ProcessLoadSignal(),
      logger: options.logger,
    });
    this.host = new ActorHost({
      store: options.store,
      connector: this.connections.wrap(
        options.connector,
        options.ownership ? (id) => options.ownership!.holds(id) : undefined,
      ),
      route: (instanceId, signal) => this.onSignal(instanceId, signal),
      onCommandFailed: (instanceId, command, error) =>
        void this.log.write(instanceId, 'warn', `WhatsApp command ${command} failed`, {
          error: errorMessage(error),
        }),
      machineConfig: { qrMaxCount: config.qrCodeMaxCount },
      reconnect: config.reconnect,
      ...(limits ? { growthGuard: new StreamGrowthGuard(options.store, limits.eventsPerDay) } : {}),
      ...(options.inspect ? { inspect: options.inspect } : {}),
    });
    this.outbox = new SendOutbox({
      store: options.store,
      index: options.outboxIndex,
      connection: (id) => {
        const snapshot = this.host.liveSnapshot(id);
        return snapshot && apiStateOf(snapshot) === 'open' ? this.connections.get(id) : undefined;
      },
      recordSent: (id, sends) => this.traffic.sentAll(id, sends),
      recordVerdict: (id, events) => whatsappStreams.append(id, events),
      log: (id, level, message, context) => void this.log.write(id, level, message, context),
      pairedAt: (id) => pairedAt(options.store, id),
      restrictionBackoff: {
        baseMs: config.outbox.restrictionBackoffMs,
        maxMs: config.outbox.restrictionBackoffMaxMs,
      },
      maxInFlight: config.outbox.maxInFlight,
      keyRetentionMs: 48 * 3_600_000,
      owns: (id) => !options.ownership || options.ownership.holds(id),
      watchOpened: (id, opened) =>
        this.host.onRecorded(id, (recorded) => {
          if (recorded.events.some((event) => event.type === 'InstanceOpened')) opened();
        }),
    });
    this.deletion = new InstanceDeletion({
      outbox: this.outbox,
      host: this.host,
      store: options.store,
      readModel: options.readModel,
      pending: options.pending,
      connector: options.connector,
      secrets: options.secrets,
      whatsappStreams,
      now,
      ...(options.onInstanceDeleted ? { onInstanceDeleted: options.onInstanceDeleted } : {}),
    });
    this.commands = new InstanceCommands({
      host: this.host,
      deletion: this.deletion,
      pending: options.pending,
      readModel: options.readModel,
      store: options.store,
      connector: options.connector,
      outbox: this.outbox,
      sendWaitMs: config.outbox.waitMs,
      secrets: options.secrets,
      now,
      reconnectRateLimitMs: config.reconnect.userRateLimitMs,
      limits: new InstanceRateLimits({
        settings: limits?.settingsPerMinute ?? 0,
        lifecycle: limits?.lifecyclePerMinute ?? 0,
        pairing: limits?.pairingPerMinute ?? 0,
        send: limits?.sendPerMinute ?? 0,
      }),
      readYourWritesTimeoutMs: options.readYourWritesTimeoutMs ?? 10_000,
      restoring: {
        isWaiting: (id) => this.restores.isWaiting(id),
        hurry: (id) => this.restores.hurry(id),
      },
      ...(options.reservationGraceMs !== undefined ? { reservationGraceMs: options.reservationGraceMs } : {}),
      ...(options.ownership
        ? { onInstanceCreated: (instanceId: string) => options.ownership!.place(instanceId) }
        : {}),
      tokens: options.tokens,
      ...(config.webhook?.allowPrivateNetworks !== undefined
        ? { allowPrivateWebhooks: config.webhook.allowPrivateNetworks }
        : {}),
    });
  }

  private at(): string {
    return this.now().toISOString();
  }

  /**
   * Loads every instance and sends it `restore`: a paired instance that was live (or shut down cleanly)
   * reconnects without a QR, a never-paired one waiting for a QR goes idle (no QR storm), the rest ignore
   * it. Planned (restore/scheduler.ts): the most recently active first, as many at once as the machine
   * takes (each WhatsApp login costs CPU).
   */
  async start(): Promise<void> {
    const { readModel, store } = this.options;
    await readModel.caughtUp(await store.headPosition(), 60_000);
    // Deletes cut short before they kept a record get one now; the instance's owner finishes them below.
    const interrupted = await this.deletion.recordInterrupted();
    if (interrupted.length > 0)
      this.options.logger.warn(
        { instances: interrupted },
        'found deletes that stopped half-way (before deletes were recorded): finishing them',
      );
    if (this.options.ownership) return;
    for (const id of await readModel.instanceIds()) this.restores.enqueue(id);
    for (const id of await this.options.pending.ids()) this.restores.enqueue(id);
  }

  /** This node took the instance's lease (every instance, at boot, on a single node): restore it. */
  adopt(id: string): void {
    this.restores.enqueue(id);
  }

  /** The runtime's series on /metrics: the restore plan's progress and the outboxes. */
  registerMetrics(metrics: MetricsRegistry): void {
    registerRestoreMetrics(metrics, () => this.restoreProgress());
    registerOutboxMetrics(metrics, this.outbox);
  }

  /** How far the current (or last) restore got: /health, /metrics. */
  restoreProgress(): RestoreProgress {
    return this.restores.progress();
  }

  /**
   * Cluster mode: the lease is gone (another node took it over). The actor stops at once, which closes
   * the socket; nothing is recorded (the new owner writes the instance now).
   */
  drop(id: string): void {
    this.outbox.drop(id);
    this.host.forget(id);
    void this.host.inMailbox(id, async () => this.host.forget(id));
  }

  /**
   * Cluster mode: every instance that exists, and those whose delete is still to finish (their lease row
   * stays, so that their owner finishes the delete).
   */
  async instanceIds(): Promise<string[]> {
    return [...(await this.options.readModel.instanceIds()), ...(await this.options.pending.ids())];
  }

  /** Cluster mode: instances with a live WhatsApp connection in this process. */
  connected(): string[] {
    return this.connections.ids();
  }

  /** Cluster mode: rebalancing leaves an instance alone while it is being paired (QR shown, connecting). */
  movable(id: string): boolean {
    const snapshot = this.host.liveSnapshot(id);
    if (!snapshot || snapshot.status !== 'active') return true;
    const state = apiStateOf(snapshot);
    return state !== 'qr' && state !== 'connecting';
  }

  /** Cluster mode: hand-over. Records the `shutdown` close and closes the socket; the next owner restores. */
  async handOver(id: string): Promise<void> {
    this.outbox.drop(id);
    if (this.host.liveSnapshot(id))
      await this.host
        .dispatch(id, { type: 'shutdown', at: this.at() })
        .finally(() => this.host.inMailbox(id, async () => this.host.forget(id)));
  }

  /** One instance's turn in the restore plan (failures are logged by the scheduler). */
  private async restore(id: string): Promise<void> {
    if (this.stopping) return;
    // Cluster mode: the lease may have moved on while this restore waited for its turn.
    if (this.options.ownership && !this.options.ownership.holds(id)) return;
    if (await this.finishCutShort(id)) return;
    // What a crash or the previous owner left unsent goes once the connection opens.
    this.outbox.adopt(id);
    // A command that reached the instance while this restore waited for its turn (a connect right after
    // a create placed it here) already opened a socket: restoring now would close it.
    let runningAlready = false;
    await this.host.dispatch(
      id,
      { type: 'restore', at: this.at() },
      {
        stillWanted: () => {
          runningAlready = this.connections.get(id) !== undefined;
          return !runningAlready;
        },
      },
    );
    if (runningAlready) return;
    await this.host.until(id, (snapshot) => SETTLED.includes(apiStateOf(snapshot)), 30_000);
  }

  /**
   * What a crash may have cut short for this instance is finished before it is restored: a delete (then
   * there is nothing to restore: true), a token rotation, a logout whose session removal did not happen
   * (the next connect would log in again without a QR). A failed attempt is retried while this node owns
   * the instance.
   */
  private async finishCutShort(id: string, attempt = 0): Promise<boolean> {
    try {
      if (await this.deletion.isPending(id)) {
        this.options.logger.warn({ instanceId: id }, 'finishing a delete that stopped half-way');
        await this.deletion.complete(id);
        this.options.logger.info({ instanceId: id }, 'finished a delete that stopped half-way');
        return true;
      }
      await this.deletion.finishRetirements(id);
      const { context } = await this.host.snapshot(id);
      if (!context.paired && context.lastClose?.reason === 'user_logout')
        await this.options.connector.removeSession(id);
      return false;
    } catch (error) {
      if (attempt >= MAX_FINISH_ATTEMPTS) {
        this.options.logger.error(
          { err: error, instanceId: id },
          'could not finish what a crash cut short; the next start (or owner) tries again',
        );
        return true;
      }
      this.options.logger.warn({ err: error, instanceId: id }, 'could not finish what a crash cut short');
      const retryMs = Math.min(60_000, 1_000 * 2 ** attempt);
      setTimeout(() => {
        if (this.stopping || (this.options.ownership && !this.options.ownership.holds(id))) return;
        void this.finishCutShort(id, attempt + 1).then(
          (deleted) => {
            if (!deleted) this.adopt(id);
          },
          () => undefined,
        );
      }, retryMs).unref();
      return true;
    }
  }

  /**
   * First step of a shutdown, before the HTTP server closes (it waits for the requests in flight): requests
   * waiting for WhatsApp (a pairing code) answer 503 at once, and no restore starts any more.
   */
  beginShutdown(): void {
    this.stopping = true;
    this.restores.stop();
    this.commands.abortWaits();
    this.outbox.stop();
  }

  /** Closes every connection; live instances record a `shutdown` close so the next boot restores them. */
  async stop(): Promise<void> {
    this.beginShutdown();
    await Promise.all(
      this.host.ids().map(async (id) => {
        // Cluster mode: an instance handed over already (or never owned here) has nothing to record.
        if (this.options.ownership && !this.options.ownership.holds(id)) {
          await this.host.inMailbox(id, async () => this.host.forget(id));
          return;
        }
        await this.host
          .dispatch(id, { type: 'shutdown', at: this.at() })
          .catch((error: unknown) =>
            this.options.logger.warn({ err: error, instanceId: id }, 'could not record the shutdown'),
          );
        await this.host.inMailbox(id, async () => this.host.forget(id));
      }),
    );
    await this.host.drain();
  }

  /** For tests and the visualizer: the live actor's snapshot. */
  liveSnapshot(id: string): LiveSnapshot | undefined {
    return this.host.liveSnapshot(id);
  }

  // ------------------------------------------------------------------ what health reads and does

  /** The API state of the instance's live actor here; undefined when this process has none. */
  apiStateOf(id: string): string | undefined {
    const snapshot = this.host.liveSnapshot(id);
    return snapshot && snapshot.status === 'active' ? apiStateOf(snapshot) : undefined;
  }

  /** Instances open on this node, with a live connection. */
  *openInstances(): Iterable<string> {
    for (const id of this.connections.ids()) {
      const snapshot = this.host.liveSnapshot(id);
      if (snapshot && snapshot.status === 'active' && apiStateOf(snapshot) === 'open') yield id;
    }
  }

  /** The pipeline's figures: a stuck mailbox job, the oldest received event not yet recorded. */
  pipelineFigures(id: string): {
    mailboxBusySince: number | undefined;
    oldestAppendStartedAt: number | undefined;
    lastAppendLatencyMs: number | undefined;
  } {
    let oldest: number | undefined;
    for (const started of this.appending.get(id)?.values() ?? [])
      if (oldest === undefined || started < oldest) oldest = started;
    return {
      mailboxBusySince: this.host.busySince(id),
      oldestAppendStartedAt: oldest,
      lastAppendLatencyMs: this.lastAppendLatency.get(id),
    };
  }

  /** Appends events beside the machine's (health) to the instance stream. */
  async recordBeside(id: string, events: readonly NewEvent[]): Promise<void> {
    await this.host.recordBeside(id, events);
  }

  /** Healing: a new socket now (the machine's reconnect; its backoff applies if that one fails). */
  async healReconnect(id: string): Promise<void> {
    await this.host.dispatch(id, { type: 'reconnect', at: this.at() });
  }

  /** Healing: the actor is loaded again from its stream and restored (reconnects a paired instance). */
  async healRestartActor(id: string): Promise<void> {
    await this.host.restart(id);
    await this.host.dispatch(id, { type: 'restore', at: this.at() });
  }

  private onSignal(instanceId: string, signal: RoutedSignal): void {
    if (signal.type === 'whatsapp') {
      const settings = this.host.liveSnapshot(instanceId)?.context.advancedSettings;
      if (!settings) return;
      const started = Date.now();
      const token = Symbol('append');
      let inFlight = this.appending.get(instanceId);
      if (!inFlight) this.appending.set(instanceId, (inFlight = new Map()));
      inFlight.set(token, started);
      void this.traffic
        .received(instanceId, signal.event, settings)
        .then(() => this.lastAppendLatency.set(instanceId, Date.now() - started))
        .catch((error: unknown) =>
          this.options.logger.error({ err: error, instanceId }, 'could not record a WhatsApp event'),
        )
        .finally(() => {
          inFlight.delete(token);
          if (inFlight.size === 0 && this.appending.get(instanceId) === inFlight)
            this.appending.delete(instanceId);
        });
      return;
    }
    const event = signalToMachineEvent(signal, this.at());
    if (!event) return;
    void this.host
      .dispatch(instanceId, event)
      .catch((error: unknown) =>
        this.options.logger.error(
          { err: error, instanceId, signal: signal.type },
          'could not apply a connection signal',
        ),
      );
  }
}
