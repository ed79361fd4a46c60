/**
 * The commands of the API (InstanceService): each is one machine event through the actor host, and
 * answers from the write side, the live actor's state right after its events were appended. Also the
 * sagas that span several streams: create (name and token reservations), token rotation and delete (whose
 * steps live in deletion.ts).
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Errors, type ZapwireError } from '../domain/errors.ts';
import {
  DEFAULT_ADVANCED_SETTINGS,
  DEFAULT_SINK_SETTINGS,
  instanceStream,
  nameReservationStream,
  pickAdvancedSettings,
  tokenStream,
  type AdvancedSettings,
  type InstanceEvent,
  type InstanceEventMap,
  type ProxyView,
  type SinkSettings,
} from '../domain/events.ts';
import {
  generateToken,
  generateWebhookSecret,
  legacyTokenHash,
  weakTokenReason,
  type TokenDigests,
} from '../domain/tokens.ts';
import { checkWebhookUrl } from '../domain/webhook-url.ts';
import { isWrongExpectedVersion } from '../store/errors.ts';
import type { Checkpoint, EventLog, NewEvent } from '../store/port.ts';
import type { WhatsAppConnector } from '../whatsapp/port.ts';
import { apiStateOf, type InstanceMachineEvent } from '../../machines/instance/index.ts';
import type { ActorHost, LiveSnapshot, Recorded } from './actor-host.ts';
import { WindowRateLimiter, type InstanceRateLimits, type LimitedCommand } from './rate-limit.ts';
import type { RuntimeReadModel } from './read-model.ts';
import { SendCommands } from './outbox/send-commands.ts';
import type { SendOutbox } from './outbox/send-outbox.ts';
import type { InstanceSecrets } from './secrets.ts';
import type {
  CreateInstanceInput,
  InstanceService,
  InstanceStatus,
  ProxyInput,
  SendOutcome,
  SendTextOptions,
} from './service.ts';
import type { InstanceDeletion } from './deletion.ts';
import type { PendingDeletions } from './pending-deletions.ts';

export interface CommandsOptions {
  readonly host: ActorHost;
  /** The delete saga. */
  readonly deletion: InstanceDeletion;
  /** Records of sagas cut short (token rotation notes the tokens it retires here first). */
  readonly pending: Pick<PendingDeletions, 'retire' | 'forgetRetired'>;
  readonly readModel: RuntimeReadModel;
  readonly store: EventLog;
  /** For removing a WhatsApp session (logout, delete). */
  readonly connector: Pick<WhatsAppConnector, 'removeSession'>;
  /** The outboxes of the instances this node owns: every send goes through one. */
  readonly outbox: SendOutbox;
  /** How long a send route waits for WhatsApp's answer before answering 202 (SEND_WAIT_MS). */
  readonly sendWaitMs: number;
  readonly secrets: InstanceSecrets;
  /** How tokens are stored (HMAC under the server pepper). */
  readonly tokens: TokenDigests;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: may an instance's webhook URL name a private address. Default true. */
  readonly allowPrivateWebhooks?: boolean;
  readonly now: () => Date;
  /** At most one user reconnect per instance in this window. */
  readonly reconnectRateLimitMs: number;
  /** Per-instance token buckets of the other commands (rate-limit.ts). */
  readonly limits: InstanceRateLimits;
  /** How long a command waits for the read model (read-your-writes). */
  readonly readYourWritesTimeoutMs: number;
  /**
   * How old a name or token reservation without an instance must be before a create may take it over
   * (a create that crashed half-way). Default 60 s: far longer than a create takes.
   */
  readonly reservationGraceMs?: number;
  /** How long POST /instance/pair waits for WhatsApp's code. */
  readonly pairingCodeTimeoutMs?: number;
  /** Called once a new instance's first event is stored (cluster mode places it on a node). */
  readonly onInstanceCreated?: (instanceId: string) => Promise<void>;
  /** The restore plan after a start: commands that reach WhatsApp wait until the instance's turn came. */
  readonly restoring?: {
    isWaiting(instanceId: string): boolean;
    /** Moves it to the front; returns the seconds it will likely take (Retry-After). */
    hurry(instanceId: string): number;
  };
}

/** Commands that reach WhatsApp: refused (503) for an instance still waiting to be restored. */
const REACHES_WHATSAPP = new Set<InstanceMachineEvent['type']>([
  'connect',
  'reconnect',
  'disconnect',
  'logout',
]);

/** Answer to a pairing-code request cut short by a shutdown (503 with Retry-After). */
export const SHUTDOWN_PAIRING_MESSAGE =
  'the server is shutting down, so no pairing code will come for this request: ask again once it is back (or scan the QR code then)';

export class InstanceCommands implements InstanceService {
  private readonly reconnectLimiter: WindowRateLimiter;
  /** Aborted at shutdown: requests still waiting for WhatsApp (a pairing code) get their answer at once. */
  private readonly closing = new AbortController();
  /** The outbox's commands (send, follow, cancel, pacing), for the send routes. */
  readonly sends: SendCommands;

  constructor(private readonly options: CommandsOptions) {
    this.sends = new SendCommands({
      outbox: options.outbox,
      snapshot: (id) => options.host.snapshot(id),
      limit: (id) => this.limit(id, 'send'),
      limitSettings: (id) => this.limit(id, 'settings'),
      waitMs: options.sendWaitMs,
    });
    // Every pairing-code wait listens on this one signal (removed when it ends); many at once are normal.
    setMaxListeners(0, this.closing.signal);
    this.reconnectLimiter = new WindowRateLimiter(options.reconnectRateLimitMs);
  }

  private at(): string {
    return this.options.now().toISOString();
  }

  private async readYourWrites(recorded: Pick<Recorded, 'append'> | undefined, projection: string) {
    if (!recorded) return;
    await this.options.readModel.caughtUp(recorded.append.position, this.options.readYourWritesTimeoutMs, [
      projection,
    ]);
  }

  /**
   * After a start, an instance waits for its turn in the restore plan before it reconnects. A command that
   * needs its WhatsApp connection meanwhile would otherwise fail as "disconnected" or log in out of turn:
   * it gets a 503 with Retry-After instead, and the instance moves to the front of the plan.
   */
  private refuseWhileRestoring(id: string): void {
    const restoring = this.options.restoring;
    if (!restoring?.isWaiting(id)) return;
    const seconds = restoring.hurry(id);
    throw Errors.unavailable(
      `this instance is waiting to be restored after the server started (it reconnects to WhatsApp in turn; GET /health shows the progress): it now goes first, try again in ${seconds} s`,
      seconds,
    );
  }

  private async command(id: string, event: InstanceMachineEvent): Promise<LiveSnapshot> {
    if (REACHES_WHATSAPP.has(event.type)) this.refuseWhileRestoring(id);
    const { recorded, snapshot } = await this.options.host.dispatch(id, event, { limited: true });
    await this.readYourWrites(recorded, 'instances');
    return snapshot;
  }

  async create(
    input: CreateInstanceInput,
  ): Promise<{ instance: InstanceStatus; token: string; webhookSecret: string }> {
    const { store, secrets } = this.options;
    this.checkSinks(input.sinks);
    const weakToken = input.token === undefined ? undefined : weakTokenReason(input.token);
    if (weakToken) throw Errors.validation(weakToken);
    const id = input.id ?? randomUUID();
    const at = this.at();
    const token = input.token ?? generateToken();
    const tokenHash = this.options.tokens.digest(token);
    // The same token stored the old way (before the pepper) belongs to an instance already.
    if ((await store.streamVersion(tokenStream(legacyTokenHash(token)))) > 0) throw Errors.tokenTaken();
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
      await store.deleteStream(nameReservationStream(input.name));
      throw error;
    }
    // A reservation is only taken over once stale, so losing one here means this create stalled for
    // longer than the grace period: give way rather than write a second instance with the same name.
    if (
      !(await this.holds(nameReservationStream(input.name), id)) ||
      !(await this.holds(tokenStream(tokenHash), id))
    )
      throw Errors.nameTaken(input.name);
    const webhookSecret = generateWebhookSecret();
    await secrets.put(id, 'webhook_secret', webhookSecret);
    if (input.proxy?.password) await secrets.put(id, 'proxy_password', input.proxy.password);
    const created: InstanceEventMap['InstanceCreated'] = {
      at,
      instanceId: id,
      name: input.name,
      createdBy: 'admin',
      advancedSettings: { ...DEFAULT_ADVANCED_SETTINGS, ...pickAdvancedSettings(input.advancedSettings) },
      sinks: { ...DEFAULT_SINK_SETTINGS, ...input.sinks },
      proxy: input.proxy ? proxyView(input.proxy) : null,
    };
    const append = await store.append(
      instanceStream(id),
      [{ type: 'InstanceCreated', data: { ...created } }],
      {
        expectedVersion: 'no_stream',
      },
    );
    await this.options.onInstanceCreated?.(id);
    await this.readYourWrites({ append }, 'instances');
    const instance: InstanceStatus = {
      id,
      name: input.name,
      state: 'created',
      connected: false,
      loggedIn: false,
      jid: null,
    };
    return { instance, token, webhookSecret };
  }

  /**
   * Claims a unique key as a stream that may exist once. A reservation left by a create that crashed
   * half-way (its instance stream was never written) is taken over rather than blocking the key forever,
   * but only once it is older than the grace period: a younger one belongs to a create still running, and
   * taking it over would let both creates write an instance with the same name.
   */
  private async reserve(stream: string, event: NewEvent, taken: () => ZapwireError): Promise<void> {
    const { store } = this.options;
    try {
      await store.append(stream, [event], { expectedVersion: 'no_stream' });
      return;
    } catch (error) {
      if (!isWrongExpectedVersion(error)) throw error;
    }
    const existing = await store.readStream(stream);
    const last = existing.at(-1);
    const holder = last?.data['instanceId'];
    if (typeof holder !== 'string' || !last) throw taken();
    const age = Date.now() - last.createdAt.getTime();
    if (age < (this.options.reservationGraceMs ?? 60_000)) throw taken();
    if ((await store.streamVersion(instanceStream(holder))) > 0) throw taken();
    try {
      await store.append(stream, [event], { expectedVersion: existing.length });
    } catch (error) {
      if (isWrongExpectedVersion(error)) throw taken();
      throw error;
    }
  }

  private async holds(stream: string, instanceId: string): Promise<boolean> {
    const events = await this.options.store.readStream(stream);
    return events.at(-1)?.data['instanceId'] === instanceId;
  }

  /**
   * Takes one action from the instance's bucket for this kind of command, or throws a 429. The webhook
   * secret rotation, which is not a command, takes from the settings bucket through here.
   */
  limit(id: string, command: LimitedCommand): void {
    this.options.limits.take(command, id);
  }

  async connect(id: string, sinks?: Partial<SinkSettings>): Promise<InstanceStatus> {
    this.checkSinks(sinks);
    this.limit(id, 'lifecycle');
    return statusOf(await this.command(id, { type: 'connect', at: this.at(), ...(sinks ? { sinks } : {}) }));
  }

  async reconnect(id: string): Promise<InstanceStatus> {
    const wait = this.reconnectLimiter.tryTake(id);
    if (wait > 0) throw Errors.rateLimited(wait);
    return statusOf(await this.command(id, { type: 'reconnect', at: this.at() }));
  }

  async disconnect(id: string): Promise<InstanceStatus> {
    this.limit(id, 'lifecycle');
    return statusOf(await this.command(id, { type: 'disconnect', at: this.at() }));
  }

  async logout(id: string): Promise<InstanceStatus> {
    this.limit(id, 'lifecycle');
    const status = statusOf(await this.command(id, { type: 'logout', at: this.at() }));
    await this.options.connector.removeSession(id);
    return status;
  }

  /**
   * Records the delete, then runs it to the end (deletion.ts): InstanceDeleted, the audit record, then the
   * instance's streams, reservations, sealed secrets, WhatsApp session, lease and sinks' rows. A crash on
   * the way leaves the record, and the instance's owner finishes the delete when it starts or adopts it.
   */
  async delete(id: string, by: string): Promise<void> {
    const { deletion } = this.options;
    await deletion.begin(id, by);
    await deletion.complete(id);
    this.reconnectLimiter.forget(id);
    this.options.limits.forget(id);
  }

  /**
   * Connects when needed, forwards the request to the live connection, and awaits the code where it is
   * recorded: the actor host announces the PairingCodeIssued the connection's answer produced.
   */
  async requestPairingCode(id: string, phone: string): Promise<{ pairingCode: string }> {
    const { host } = this.options;
    if (this.closing.signal.aborted) throw Errors.unavailable(SHUTDOWN_PAIRING_MESSAGE, 5);
    this.refuseWhileRestoring(id);
    const state = apiStateOf(await host.snapshot(id));
    this.limit(id, 'pairing');
    if (state === 'open') throw Errors.alreadyConnected();
    if (state === 'created' || state === 'disconnected') await this.connect(id);
    let stop = (): void => undefined;
    const closing = this.closing.signal;
    const answer = new Promise<Recorded | 'shutdown' | undefined>((resolve) => {
      const timer = setTimeout(() => finish(undefined), this.options.pairingCodeTimeoutMs ?? 20_000);
      const unsubscribe = host.onRecorded(id, (recorded) => {
        if (recorded.events.some((event) => event.type === 'PairingCodeIssued')) finish(recorded);
        else if (recorded.events.some(endsPairing)) finish(undefined);
      });
      const onClosing = (): void => finish('shutdown');
      closing.addEventListener('abort', onClosing, { once: true });
      function finish(recorded: Recorded | 'shutdown' | undefined): void {
        clearTimeout(timer);
        unsubscribe();
        closing.removeEventListener('abort', onClosing);
        resolve(recorded);
      }
      stop = () => finish(undefined);
      if (closing.aborted) finish('shutdown');
    });
    try {
      await host.dispatch(id, { type: 'requestPairingCode', phone, at: this.at() });
    } catch (error) {
      stop();
      throw error;
    }
    const recorded = await answer;
    if (recorded === 'shutdown') throw Errors.unavailable(SHUTDOWN_PAIRING_MESSAGE, 5);
    const issued = recorded?.events.find((event) => event.type === 'PairingCodeIssued');
    if (!recorded || issued?.type !== 'PairingCodeIssued') {
      throw Errors.unavailable(
        'WhatsApp did not return a pairing code in time: try again, or scan the QR code instead',
        5,
      );
    }
    // GET /instance/qr right after shows the same code.
    await this.readYourWrites(recorded, 'instances');
    return { pairingCode: formatPairingCode(issued.data.code) };
  }

  /** Shutdown begins: requests waiting for WhatsApp answer now instead of holding the HTTP server open. */
  abortWaits(): void {
    this.closing.abort();
  }

  // The machine merges a patch into its own context (the truth, under the mailbox): no read-model merge here.
  async changeAdvancedSettings(id: string, patch: Partial<AdvancedSettings>): Promise<AdvancedSettings> {
    this.limit(id, 'settings');
    return (await this.command(id, { type: 'changeAdvancedSettings', settings: patch, at: this.at() }))
      .context.advancedSettings;
  }

  /** Every way a webhook URL enters (create, connect, events) passes here: one rule, one message. */
  private checkSinks(sinks: Partial<SinkSettings> | undefined): void {
    const url = sinks?.webhookUrl;
    if (!url) return;
    const checked = checkWebhookUrl(url, { allowPrivateNetworks: this.options.allowPrivateWebhooks ?? true });
    if (!checked.ok) throw Errors.validation(`webhookUrl: ${checked.problem}`);
  }

  /**
   * Replaces every token of the instance with a new, generated one (shown once). The new token is bound
   * first, then each old one is revoked (an event the instances projection removes it on) and its stream
   * deleted, so there is no moment without a working token and none after it with the old one. The old
   * ones are noted before they are revoked: a rotation cut short is finished when the instance's owner
   * starts (deletion.ts), or the revoked streams would outlive even a delete of the instance.
   */
  async rotateToken(id: string): Promise<{ token: string }> {
    const { host, store, readModel } = this.options;
    await host.snapshot(id);
    this.limit(id, 'settings');
    const token = generateToken();
    const tokenHash = this.options.tokens.digest(token);
    return host.inMailbox(id, async () => {
      const old = await readModel.tokenHashesOf(id);
      await this.reserve(
        tokenStream(tokenHash),
        { type: 'InstanceTokenAssigned', data: { at: this.at(), instanceId: id, tokenHash } },
        () => Errors.tokenTaken(),
      );
      // A sealed copy kept for the admin (Evolution GO's listings show tokens) is the working token or
      // nothing: never the old one, which stops working below.
      if ((await this.options.secrets.get(id, 'instance_token')) !== undefined)
        await this.options.secrets.put(id, 'instance_token', token);
      // Only once the new token is bound: the old ones are to go from here on, whatever happens.
      await this.options.pending.retire(id, old);
      let last: Checkpoint | undefined;
      for (const hash of old) {
        const revoked = await store.append(
          tokenStream(hash),
          [{ type: 'InstanceTokenRevoked', data: { at: this.at(), instanceId: id, tokenHash: hash } }],
          { expectedVersion: 'any' },
        );
        last = revoked.position;
      }
      const head = last ?? (await store.headPosition());
      await readModel.caughtUp(head, this.options.readYourWritesTimeoutMs, ['instances']);
      for (const hash of old) await store.deleteStream(tokenStream(hash));
      await this.options.pending.forgetRetired(old);
      return { token };
    });
  }

  async configureSinks(id: string, patch: Partial<SinkSettings>): Promise<SinkSettings> {
    this.checkSinks(patch);
    this.limit(id, 'settings');
    return (await this.command(id, { type: 'configureSinks', sinks: patch, at: this.at() })).context.sinks;
  }

  async configureProxy(id: string, proxy: ProxyInput): Promise<ProxyView> {
    const { secrets } = this.options;
    await this.options.host.snapshot(id);
    this.limit(id, 'settings');
    if (proxy.password) await secrets.put(id, 'proxy_password', proxy.password);
    else await secrets.remove(id, 'proxy_password');
    const view = proxyView(proxy);
    const after = await this.command(id, { type: 'configureProxy', proxy: view, at: this.at() });
    return after.context.proxy ?? view;
  }

  async removeProxy(id: string): Promise<void> {
    this.limit(id, 'settings');
    await this.command(id, { type: 'removeProxy', at: this.at() });
    await this.options.secrets.remove(id, 'proxy_password');
  }

  /** Through the instance's outbox (src/runtime/outbox/send-commands.ts). */
  async sendText(
    id: string,
    number: string,
    text: string,
    options: SendTextOptions = {},
  ): Promise<SendOutcome> {
    this.refuseWhileRestoring(id);
    return this.sends.sendText(id, number, text, options);
  }
}

/** The state an instance's snapshot shows to the API (the read model's columns, from the fold). */
export function statusOf(snapshot: LiveSnapshot): InstanceStatus {
  const state = apiStateOf(snapshot);
  const { instanceId, name, paired, jid } = snapshot.context;
  return { id: instanceId, name, state, connected: state === 'open', loggedIn: paired, jid };
}

/** The connection opened, or closed for good: no pairing code is coming for this request. */
function endsPairing(event: InstanceEvent): boolean {
  return (
    event.type === 'InstanceOpened' ||
    event.type === 'InstanceDeleted' ||
    (event.type === 'ConnectionClosed' && !event.data.willReconnect)
  );
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
