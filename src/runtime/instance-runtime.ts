/**
 * The actor host: one XState actor per instance, one mailbox per instance. Every change follows
 * decide (pure transition) → append (expected version) → apply (the live actor), so the event log is the
 * truth and the live actor never runs ahead of it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createActor, type Actor } from 'xstate';
import type { Logger } from 'pino';
import { Errors, type ZapwireError } from '../domain/errors.ts';
import {
  AUDIT_STREAM,
  DEFAULT_ADVANCED_SETTINGS,
  DEFAULT_SINK_SETTINGS,
  instanceStream,
  nameReservationStream,
  tokenStream,
  whatsappStream,
  type AdvancedSettings,
  type InstanceEvent,
  type InstanceEventMap,
  type ProxyView,
  type SinkSettings,
  type WhatsAppEvent,
} from '../domain/events.ts';
import { generateToken, hashToken } from '../domain/tokens.ts';
import { isWrongExpectedVersion } from '../store/errors.ts';
import type { AppendResult, Checkpoint, EventStore, NewEvent, RecordedEvent } from '../store/port.ts';
import type { SqlDatabase } from '../store/sql.ts';
import type { WhatsAppConnector } from '../whatsapp/port.ts';
import {
  createConnectionActor,
  signalToMachineEvent,
  type RoutedSignal,
} from '../whatsapp/connection-actor.ts';
import {
  apiStateOf,
  decide,
  foldInstance,
  inputOf,
  instanceMachine,
  reconnectDelayWithin,
  restoreSnapshot,
  type InstanceMachineConfig,
  type InstanceMachineEvent,
} from '../../machines/instance/index.ts';
import type { InspectionEvent } from 'xstate';
import { findInstance, listInstances, sinkSettingsOf, type InstanceView } from '../../projections/queries.ts';
import type { ProjectionRunner } from '../../projections/runner.ts';
import { Mailboxes } from './mailbox.ts';
import { WindowRateLimiter } from './rate-limit.ts';
import { Semaphore } from './semaphore.ts';
import type { InstanceSecrets } from './secrets.ts';
import type {
  CreateInstanceInput,
  InstanceService,
  ProxyInput,
  SendTextOptions,
  SentMessage,
} from './service.ts';
import { ConnectionRegistry } from './tracking-connector.ts';
import { normaliseRecipient } from './recipient.ts';

type LiveMachine = ReturnType<typeof instanceMachine.provide>;

interface Host {
  readonly id: string;
  readonly actor: Actor<LiveMachine>;
  /** Number of events in the instance stream that the actor has applied. */
  version: number;
}

export interface RuntimeOptions {
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly projections: ProjectionRunner;
  readonly connector: WhatsAppConnector;
  readonly secrets: InstanceSecrets;
  readonly logger: Logger;
  readonly qrMaxCount: number;
  readonly reconnect: { readonly baseMs: number; readonly maxMs: number; readonly userRateLimitMs: number };
  readonly restoreConcurrency: number;
  readonly now?: () => Date;
  /** How long a command waits for the read model (read-your-writes). */
  readonly readYourWritesTimeoutMs?: number;
  /**
   * How old a name or token reservation without an instance must be before a create may take it over
   * (a create that crashed half-way). Default 60 s: far longer than a create takes.
   */
  readonly reservationGraceMs?: number;
  /** Called after an instance and its streams are gone (sinks drop its delivery log and metrics). */
  readonly onInstanceDeleted?: (instanceId: string) => Promise<void>;
  /** Receives the XState inspection stream of every instance actor (the visualizer's live feed). */
  readonly inspect?: (instanceId: string, event: InspectionEvent) => void;
}

export class InstanceRuntime implements InstanceService {
  private readonly hosts = new Map<string, Host>();
  private readonly mailboxes = new Mailboxes();
  private readonly reconnectLimiter: WindowRateLimiter;
  private readonly restorePacer: Semaphore;
  readonly connections = new ConnectionRegistry();
  private readonly machine: LiveMachine;
  private readonly now: () => Date;
  private stopping = false;
  private readonly machineConfig: InstanceMachineConfig;

  constructor(private readonly options: RuntimeOptions) {
    this.now = options.now ?? (() => new Date());
    this.machineConfig = { qrMaxCount: options.qrMaxCount };
    this.reconnectLimiter = new WindowRateLimiter(options.reconnect.userRateLimitMs);
    this.restorePacer = new Semaphore(options.restoreConcurrency);
    const connector = this.connections.wrap(options.connector);
    const { baseMs, maxMs } = options.reconnect;
    this.machine = instanceMachine.provide({
      actors: {
        whatsappConnection: createConnectionActor(
          connector,
          (instanceId, signal) => this.onSignal(instanceId, signal),
          {
            onCommandFailed: (instanceId, command, error) =>
              void this.logRuntime(instanceId, 'warn', `WhatsApp command ${command} failed`, {
                error: errorMessage(error),
              }),
          },
        ),
      },
      delays: { reconnectDelay: reconnectDelayWithin({ baseMs, capMs: maxMs }) },
    });
  }

  private at(): string {
    return this.now().toISOString();
  }

  // ---------------------------------------------------------------- boot and shutdown

  /**
   * Loads every instance and sends it `restore`: a paired instance that was live (or shut down cleanly)
   * reconnects without a QR, a never-paired one waiting for a QR goes idle (no QR storm), the rest ignore
   * it. Paced: each WhatsApp login costs CPU, so at most `restoreConcurrency` connect at once.
   */
  async start(): Promise<void> {
    await this.options.projections.waitFor(await this.options.store.headPosition(), 60_000);
    const instances = await listInstances(this.options.db);
    for (const instance of instances) void this.restorePaced(instance.id);
  }

  private async restorePaced(id: string): Promise<void> {
    const release = await this.restorePacer.acquire();
    try {
      if (this.stopping) return;
      await this.dispatch(id, { type: 'restore', at: this.at() });
      await this.waitForState(id, ['created', 'disconnected', 'qr', 'open', 'deleted'], 30_000);
    } catch (error) {
      this.options.logger.warn({ err: error, instanceId: id }, 'restore failed');
    } finally {
      release();
    }
  }

  /** Closes every connection; live instances record a `shutdown` close so the next boot restores them. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.hosts.keys()].map(async (id) => {
        await this.dispatch(id, { type: 'shutdown', at: this.at() }).catch((error: unknown) =>
          this.options.logger.warn({ err: error, instanceId: id }, 'could not record the shutdown'),
        );
        await this.mailboxes.run(id, async () => {
          this.hosts.get(id)?.actor.stop();
          this.hosts.delete(id);
        });
      }),
    );
    await this.mailboxes.drain();
  }

  // ---------------------------------------------------------------- hosts

  private async readInstanceEvents(id: string): Promise<RecordedEvent[]> {
    return this.options.store.readStream(instanceStream(id));
  }

  private startActor(id: string, events: readonly RecordedEvent[]): Host {
    const folded = foldInstance(events, this.machineConfig);
    const actor = createActor(this.machine, {
      snapshot: restoreSnapshot(this.machine, folded),
      input: inputOf(folded.context),
      inspect: this.options.inspect ? (inspection) => this.options.inspect?.(id, inspection) : undefined,
    });
    actor.start();
    const host: Host = { id, actor, version: events.at(-1)?.streamPosition ?? 0 };
    this.hosts.set(id, host);
    return host;
  }

  private async host(id: string): Promise<Host> {
    const existing = this.hosts.get(id);
    if (existing) return existing;
    const events = await this.readInstanceEvents(id);
    if (events.length === 0) throw Errors.instanceNotFound(id);
    return this.startActor(id, events);
  }

  private async reload(id: string): Promise<Host> {
    this.hosts.get(id)?.actor.stop();
    this.hosts.delete(id);
    return this.host(id);
  }

  // ---------------------------------------------------------------- the command path

  /**
   * decide → append → apply, inside the instance's mailbox. On a version conflict (another node or a
   * racing writer) the stream is reloaded and the command decided once more; a second conflict is a 409.
   */
  private dispatch(id: string, event: InstanceMachineEvent): Promise<AppendResult | undefined> {
    return this.mailboxes.run(id, () => this.dispatchNow(id, event));
  }

  private async dispatchNow(id: string, event: InstanceMachineEvent): Promise<AppendResult | undefined> {
    let host = await this.host(id);
    for (let attempt = 0; ; attempt += 1) {
      const { emitted } = decide(host.actor.getSnapshot(), event);
      if (emitted.length === 0) {
        // A done (deleted) actor takes no events; others may still change sub-state without recording.
        if (host.actor.getSnapshot().status === 'active') host.actor.send(event);
        return undefined;
      }
      try {
        const result = await this.options.store.append(instanceStream(id), emitted.map(toNewEvent), {
          expectedVersion: host.version,
        });
        host.version = result.nextVersion;
        host.actor.send(event);
        return result;
      } catch (error) {
        if (!isWrongExpectedVersion(error)) throw error;
        if (attempt >= 1) throw Errors.conflict();
        host = await this.reload(id);
      }
    }
  }

  private async readYourWrites(position: Checkpoint | undefined): Promise<void> {
    if (!position) return;
    await this.options.projections.waitFor(position, this.options.readYourWritesTimeoutMs ?? 10_000, [
      'instances',
    ]);
  }

  private async view(id: string): Promise<InstanceView> {
    const view = await findInstance(this.options.db, id);
    if (!view) throw Errors.instanceNotFound(id);
    return view;
  }

  private async command(id: string, event: InstanceMachineEvent): Promise<InstanceView> {
    const result = await this.dispatch(id, event);
    await this.readYourWrites(result?.position);
    return this.view(id);
  }

  // ---------------------------------------------------------------- signals from WhatsApp

  private onSignal(instanceId: string, signal: RoutedSignal): void {
    if (signal.type === 'whatsapp') {
      void this.onWhatsAppEvent(instanceId, signal.event).catch((error: unknown) =>
        this.options.logger.error({ err: error, instanceId }, 'could not record a WhatsApp event'),
      );
      return;
    }
    const event = signalToMachineEvent(signal, this.at());
    if (!event) return;
    void this.dispatch(instanceId, event).catch((error: unknown) =>
      this.options.logger.error(
        { err: error, instanceId, signal: signal.type },
        'could not apply a connection signal',
      ),
    );
  }

  private async onWhatsAppEvent(instanceId: string, event: WhatsAppEvent): Promise<void> {
    const host = this.hosts.get(instanceId);
    if (!host) return;
    const settings = host.actor.getSnapshot().context.advancedSettings;
    if (isIgnored(event, settings)) return;
    await this.options.store.append(whatsappStream(instanceId), [toNewEvent(event)], {
      expectedVersion: 'any',
    });
    const connection = this.connections.get(instanceId);
    if (!connection) return;
    if (event.type === 'MessageReceived' && settings.readMessages) {
      await connection
        .markRead(event.data.chatJid, [event.data.messageId], event.data.senderJid)
        .catch((error: unknown) =>
          this.logRuntime(instanceId, 'warn', 'could not mark a message as read', {
            error: errorMessage(error),
          }),
        );
    }
    if (event.type === 'CallReceived' && event.data.status === 'offer' && settings.rejectCall) {
      try {
        await connection.rejectCall(event.data.callId, event.data.fromJid);
        if (settings.msgRejectCall) {
          const sent = await connection.sendText(event.data.fromJid, settings.msgRejectCall);
          await this.recordSent(instanceId, event.data.fromJid, settings.msgRejectCall, sent);
        }
      } catch (error) {
        await this.logRuntime(instanceId, 'warn', 'could not reject a call', { error: errorMessage(error) });
      }
    }
  }

  private async logRuntime(
    instanceId: string,
    level: 'info' | 'warn' | 'error',
    message: string,
    context: Record<string, unknown>,
  ): Promise<void> {
    this.options.logger[level]({ instanceId, ...context }, message);
    await this.options.store
      .append(
        whatsappStream(instanceId),
        [{ type: 'RuntimeLogged', data: { at: this.at(), level, message, context } }],
        { expectedVersion: 'any' },
      )
      .catch(() => undefined);
  }

  private async recordSent(
    instanceId: string,
    chatJid: string,
    text: string,
    sent: { id: string; timestamp: string; status: string },
  ): Promise<AppendResult> {
    return this.options.store.append(
      whatsappStream(instanceId),
      [
        {
          type: 'MessageSent',
          data: {
            at: this.at(),
            messageId: sent.id,
            chatJid,
            messageType: 'text',
            text,
            timestamp: sent.timestamp,
            status: sent.status,
          },
        },
      ],
      { expectedVersion: 'any' },
    );
  }

  // ---------------------------------------------------------------- InstanceService

  async create(
    input: CreateInstanceInput,
  ): Promise<{ instance: InstanceView; token: string; webhookSecret: string }> {
    const id = input.id ?? randomUUID();
    const at = this.at();
    const token = input.token ?? generateToken();
    const tokenHash = hashToken(token);
    await this.reserve(
      nameReservationStream(input.name),
      { type: 'InstanceNameReserved', data: { at, instanceId: id, name: input.name } },
      () => Errors.nameTaken(input.name),
    );
    try {
      await this.reserve(
        tokenStream(tokenHash),
        { type: 'InstanceTokenAssigned', data: { at, instanceId: id, tokenHash } },
        () => Errors.tokenTaken(),
      );
    } catch (error) {
      await this.options.store.deleteStream(nameReservationStream(input.name));
      throw error;
    }
    // A reservation is only taken over once stale, so losing one here means this create stalled for
    // longer than the grace period: give way rather than write a second instance with the same name.
    if (
      !(await this.holds(nameReservationStream(input.name), id)) ||
      !(await this.holds(tokenStream(tokenHash), id))
    )
      throw Errors.nameTaken(input.name);
    const webhookSecret = randomBytes(32).toString('base64url');
    await this.options.secrets.put(id, 'webhook_secret', webhookSecret);
    if (input.proxy?.password) await this.options.secrets.put(id, 'proxy_password', input.proxy.password);
    const created: InstanceEventMap['InstanceCreated'] = {
      at,
      instanceId: id,
      name: input.name,
      createdBy: 'admin',
      advancedSettings: { ...DEFAULT_ADVANCED_SETTINGS, ...input.advancedSettings },
      sinks: { ...DEFAULT_SINK_SETTINGS, ...input.sinks },
      proxy: input.proxy ? proxyView(input.proxy) : null,
    };
    const result = await this.options.store.append(
      instanceStream(id),
      [{ type: 'InstanceCreated', data: { ...created } }],
      {
        expectedVersion: 'no_stream',
      },
    );
    await this.options.projections.waitFor(result.position, this.options.readYourWritesTimeoutMs ?? 10_000, [
      'instances',
    ]);
    return { instance: await this.view(id), token, webhookSecret };
  }

  /**
   * Claims a unique key as a stream that may exist once. A reservation left by a create that crashed
   * half-way (its instance stream was never written) is taken over rather than blocking the key forever,
   * but only once it is older than the grace period: a younger one belongs to a create still running, and
   * taking it over would let both creates write an instance with the same name.
   */
  private async reserve(stream: string, event: NewEvent, taken: () => ZapwireError): Promise<void> {
    try {
      await this.options.store.append(stream, [event], { expectedVersion: 'no_stream' });
      return;
    } catch (error) {
      if (!isWrongExpectedVersion(error)) throw error;
    }
    const existing = await this.options.store.readStream(stream);
    const last = existing.at(-1);
    const holder = last?.data['instanceId'];
    if (typeof holder !== 'string' || !last) throw taken();
    const age = Date.now() - last.createdAt.getTime();
    if (age < (this.options.reservationGraceMs ?? 60_000)) throw taken();
    if ((await this.options.store.streamVersion(instanceStream(holder))) > 0) throw taken();
    try {
      await this.options.store.append(stream, [event], { expectedVersion: existing.length });
    } catch (error) {
      if (isWrongExpectedVersion(error)) throw taken();
      throw error;
    }
  }

  private async holds(stream: string, instanceId: string): Promise<boolean> {
    const events = await this.options.store.readStream(stream);
    return events.at(-1)?.data['instanceId'] === instanceId;
  }

  async connect(id: string, sinks?: Partial<SinkSettings>): Promise<InstanceView> {
    if (sinks) await this.configureSinks(id, sinks);
    return this.command(id, { type: 'connect', at: this.at() });
  }

  async reconnect(id: string): Promise<InstanceView> {
    const wait = this.reconnectLimiter.tryTake(id);
    if (wait > 0) throw Errors.rateLimited(wait);
    return this.command(id, { type: 'reconnect', at: this.at() });
  }

  disconnect(id: string): Promise<InstanceView> {
    return this.command(id, { type: 'disconnect', at: this.at() });
  }

  async logout(id: string): Promise<InstanceView> {
    const view = await this.command(id, { type: 'logout', at: this.at() });
    await this.options.connector.removeSession(id);
    return view;
  }

  async delete(id: string, by: string): Promise<void> {
    const before = await this.view(id);
    const { rows: tokens } = await this.options.db.query<{ token_hash: string }>(
      'SELECT token_hash FROM rm_instance_tokens WHERE instance_id = $1',
      [id],
    );
    const result = await this.dispatch(id, { type: 'delete', at: this.at() });
    if (result) await this.options.projections.waitFor(result.position, 30_000);
    await this.mailboxes.run(id, async () => {
      this.hosts.get(id)?.actor.stop();
      this.hosts.delete(id);
      await this.options.connector.removeSession(id);
      await this.options.secrets.remove(id);
      const { store } = this.options;
      await store.deleteStream(whatsappStream(id));
      await store.deleteStream(instanceStream(id));
      await store.deleteStream(nameReservationStream(before.name));
      for (const { token_hash } of tokens) await store.deleteStream(tokenStream(token_hash));
      const audit = await store.append(
        AUDIT_STREAM,
        [
          {
            type: 'InstanceDeletionAudited',
            data: { at: this.at(), instanceId: id, name: before.name, createdAt: before.createdAt, by },
          },
        ],
        { expectedVersion: 'any' },
      );
      await this.options.projections.waitFor(audit.position, 30_000);
    });
    this.reconnectLimiter.forget(id);
    await this.options.onInstanceDeleted?.(id);
  }

  async requestPairingCode(id: string, phone: string): Promise<{ pairingCode: string }> {
    let view = await this.view(id);
    if (view.state === 'open') throw Errors.alreadyConnected();
    if (view.state === 'created' || view.state === 'disconnected') view = await this.connect(id);
    const result = await this.dispatch(id, { type: 'requestPairingCode', phone, at: this.at() });
    await this.readYourWrites(result?.position);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      view = await this.view(id);
      if (view.pairingCode) return { pairingCode: formatPairingCode(view.pairingCode) };
      if (view.state === 'open' || view.state === 'disconnected') break;
      await sleep(100);
    }
    throw Errors.unavailable(
      'WhatsApp did not return a pairing code in time: try again, or scan the QR code instead',
      5,
    );
  }

  private async waitForState(id: string, states: readonly string[], timeoutMs: number): Promise<void> {
    const host = await this.mailboxes.run(id, () => this.host(id));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const sub = host.actor.subscribe((snapshot) => {
        if (states.includes(apiStateOf(snapshot))) done();
      });
      function done(): void {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      }
      if (states.includes(apiStateOf(host.actor.getSnapshot()))) done();
    });
  }

  // The machine merges a patch into its own context (the truth, under the mailbox): no read-model merge here.
  async changeAdvancedSettings(id: string, patch: Partial<AdvancedSettings>): Promise<AdvancedSettings> {
    return (await this.command(id, { type: 'changeAdvancedSettings', settings: patch, at: this.at() }))
      .advancedSettings;
  }

  async configureSinks(id: string, patch: Partial<SinkSettings>): Promise<SinkSettings> {
    return sinkSettingsOf(await this.command(id, { type: 'configureSinks', sinks: patch, at: this.at() }));
  }

  async configureProxy(id: string, proxy: ProxyInput): Promise<ProxyView> {
    await this.view(id);
    if (proxy.password) await this.options.secrets.put(id, 'proxy_password', proxy.password);
    else await this.options.secrets.remove(id, 'proxy_password');
    const view = await this.command(id, { type: 'configureProxy', proxy: proxyView(proxy), at: this.at() });
    return view.proxy ?? proxyView(proxy);
  }

  async removeProxy(id: string): Promise<void> {
    await this.command(id, { type: 'removeProxy', at: this.at() });
    await this.options.secrets.remove(id, 'proxy_password');
  }

  async sendText(
    id: string,
    number: string,
    text: string,
    options: SendTextOptions = {},
  ): Promise<SentMessage> {
    const to = normaliseRecipient(number);
    const { delayMs = 0, ...textOptions } = options;
    const mentions = textOptions.mentions?.map(normaliseRecipient);
    const view = await this.view(id);
    if (view.state !== 'open') throw view.paired ? Errors.clientDisconnected() : Errors.noActiveSession();
    let connection = this.connections.get(id);
    if (!connection) throw Errors.clientDisconnected();
    if (delayMs > 0) {
      await connection.sendPresence('composing', to).catch(() => undefined);
      await sleep(delayMs);
      connection = this.connections.get(id);
      if (!connection) throw Errors.clientDisconnected();
    }
    const sent = await connection.sendText(to, text, { ...textOptions, ...(mentions ? { mentions } : {}) });
    // Recorded in the log before answering; no route reads the messages read model, so the answer does
    // not wait for its projection.
    await this.recordSent(id, to, text, sent);
    return {
      id: sent.id,
      status: sent.status,
      timestamp: sent.timestamp,
      to,
      ...(sent.mentions ? { mentions: sent.mentions } : {}),
    };
  }

  /** For tests and the visualizer: the live actor's snapshot. */
  liveSnapshot(id: string): ReturnType<Host['actor']['getSnapshot']> | undefined {
    return this.hosts.get(id)?.actor.getSnapshot();
  }
}

function toNewEvent(event: InstanceEvent | WhatsAppEvent): NewEvent {
  return { id: randomUUID(), type: event.type, data: { ...event.data } };
}

function proxyView(proxy: ProxyInput): ProxyView {
  return {
    host: proxy.host,
    port: proxy.port,
    protocol: proxy.protocol,
    ...(proxy.username ? { username: proxy.username } : {}),
    hasPassword: Boolean(proxy.password),
  };
}

function formatPairingCode(code: string): string {
  const clean = code.replace(/[^0-9A-Za-z]/g, '').toUpperCase();
  return clean.length === 8 ? `${clean.slice(0, 4)}-${clean.slice(4)}` : code;
}

function isIgnored(event: WhatsAppEvent, settings: AdvancedSettings): boolean {
  const chat =
    'chatJid' in event.data
      ? event.data.chatJid
      : 'groupJid' in event.data
        ? event.data.groupJid
        : 'fromJid' in event.data
          ? event.data.fromJid
          : '';
  if (settings.ignoreGroups && chat.endsWith('@g.us')) return true;
  if (settings.ignoreStatus && chat === 'status@broadcast') return true;
  return false;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
