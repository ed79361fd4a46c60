/**
 * One WhatsApp connection (one Baileys socket) behind the port's WhatsAppConnection.
 *
 * - Reports, in order: `qr` (each QR Baileys shows), `pairingCode`, `opened`, `whatsapp` traffic, and one
 *   final `closed`. After `close()` / `logout()` it reports nothing.
 * - Never reconnects: every close goes to the instance machine, which decides (a 515 comes back as a
 *   new `open`).
 * - A 401 deletes the saved session before `closed` is reported, so the next connect shows a QR.
 * - A proxy that cannot be built, or that fails before the WebSocket opened, is a `closed` with code null
 *   and a message naming the proxy: never a direct connection.
 */
import type { Logger } from 'pino';
import {
  isJidGroup,
  jidNormalizedUser,
  type BaileysEventMap,
  type ConnectionState,
  type UserFacingSocketConfig,
  type WABrowserDescription,
  type WAMessage,
  type WAMessageKey,
  type WAPresence,
  type BinaryNode,
} from '@whiskeysockets/baileys';
import type { AdvancedSettings } from '../../domain/events.ts';
import {
  NotConnectedError,
  type OpenConnectionOptions,
  type PresenceKind,
  type SentText,
  type TextOptions,
  type WhatsAppConnection,
  type WhatsAppSignal,
  type WhatsAppSignalListener,
} from '../port.ts';
import type { AuthSession, BaileysAuthStore } from './auth-store.ts';
import { ProxyUnavailableError, resolveProxy, type BuiltProxy } from './proxy.ts';
import { baileysLogger } from './quiet.ts';
import { BaileysProbe, type ProbeSocket } from './probe.ts';
import { DEFAULT_SERVER_ACK_WAIT_MS, refusalOf, ServerAcks } from './server-acks.ts';
import { isIgnoredBySettings } from '../../domain/traffic-filter.ts';
import { isoFromSeconds, statusName, translateBatch, type TrafficEvents } from './translate.ts';
import type { SocketCaches } from './socket-caches.ts';

/** Contacts whose last name/notify a connection remembers (see knownContacts). */
const MAX_KNOWN_CONTACTS = 10_000;

/** Baileys' QR lifetimes when `qrTimeout` is not set (Socket/socket.js). */
export const FIRST_QR_TTL_MS = 60_000;
export const LATER_QR_TTL_MS = 20_000;

/** The part of a Baileys socket this adapter uses (tests drive a stand-in through it). */
export interface SocketLike {
  readonly ev: {
    on<E extends keyof BaileysEventMap>(event: E, listener: (data: BaileysEventMap[E]) => void): void;
    process(handler: (events: Partial<BaileysEventMap>) => void | Promise<void>): () => void;
  };
  readonly ws: {
    on(event: 'open', listener: () => void): unknown;
    on(event: string, listener: (node: BinaryNode) => void): unknown;
    off?(event: string, listener: (node: BinaryNode) => void): unknown;
  };
  /** What the health probe uses (probe.ts); a stand-in without them has no probe. */
  query?(node: BinaryNode, timeoutMs?: number): Promise<unknown>;
  relayMessage?(
    jid: string,
    message: Record<string, unknown>,
    options: { additionalAttributes?: Record<string, string>; messageId?: string },
  ): Promise<string>;
  readonly signalRepository?: { deleteSession(jids: string[]): Promise<void> };
  readonly user: { id: string; lid?: string; name?: string } | undefined;
  sendMessage(
    jid: string,
    content: { text: string; mentions?: string[] },
    options?: { quoted?: WAMessage; messageId?: string },
  ): Promise<WAMessage | undefined>;
  groupMetadata(jid: string): Promise<{ participants: ReadonlyArray<{ id: string }> }>;
  requestPairingCode(phoneNumber: string): Promise<string>;
  rejectCall(callId: string, callFrom: string): Promise<void>;
  readMessages(keys: WAMessageKey[]): Promise<void>;
  sendPresenceUpdate(type: WAPresence, toJid?: string): Promise<void>;
  sendNode(node: { tag: string; attrs: Record<string, string> }): Promise<void>;
  logout(msg?: string): Promise<void>;
  end(error: Error | undefined): Promise<void> | void;
}

export type SocketFactory = (config: UserFacingSocketConfig) => SocketLike;

export interface ConnectionSettings {
  readonly logger: Logger;
  readonly store: BaileysAuthStore;
  readonly makeSocket: SocketFactory;
  readonly proxyPassword: (instanceId: string) => Promise<string | undefined>;
  /** undefined: real WhatsApp. */
  readonly webSocketUrl: string | undefined;
  /** Baileys' `qrTimeout` for every QR; undefined keeps Baileys' 60 s / 20 s. */
  readonly qrTimeoutMs: number | undefined;
  readonly connectTimeoutMs: number | undefined;
  readonly alwaysOnlineIntervalMs: number;
  readonly pairingCodeWaitMs: number;
  /** How long a send with a chosen message id waits for the server's acknowledgement (default 10 s). */
  readonly serverAckWaitMs?: number;
  readonly baileysLogLevel: 'warn' | 'error' | 'silent';
  readonly browser: WABrowserDescription | undefined;
  readonly now: () => Date;
  /** Called once the connection is gone for good (bookkeeping in the connector). */
  readonly onFinished: (connection: BaileysConnection) => void;
  /** Baileys' per-socket caches, held by the connector for every instance (socket-caches.ts). */
  readonly caches?: SocketCaches;
}

type Phase = 'starting' | 'connecting' | 'qr' | 'open' | 'closed';

export class BaileysConnection implements WhatsAppConnection {
  private phase: Phase = 'starting';
  private finished = false;
  /** close() or logout() was called: no more signals, whatever the socket still says. */
  private stopped = false;
  private socket: SocketLike | undefined;
  private auth: AuthSession | undefined;
  private proxy: BuiltProxy | undefined;
  private webSocketOpened = false;
  private qrCount = 0;
  private settings: AdvancedSettings;
  private presenceTimer: NodeJS.Timeout | undefined;
  /**
   * The last name/notify recorded per contact on this connection. Baileys re-announces the sender's push
   * name with every incoming message; an unchanged one says nothing new, and would double the events (and
   * the writes) per message.
   */
  private readonly knownContacts = new Map<string, string>();
  /** Sends waiting for WhatsApp's server to acknowledge them, by message id. */
  private readonly serverAcks = new ServerAcks();
  private firstQr: { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void };
  private readonly starting: Promise<void>;
  private closing: Promise<void> | undefined;
  private loggingOut: Promise<void> | undefined;
  /** Health measurements while open (src/health reads them through the port). */
  readonly probe = new BaileysProbe(() => this.probeSocket());

  constructor(
    readonly options: OpenConnectionOptions,
    private readonly listener: WhatsAppSignalListener,
    private readonly deps: ConnectionSettings,
  ) {
    this.settings = options.settings;
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined);
    this.firstQr = { promise, resolve, reject };
    this.starting = this.start();
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  /** For tests and the bench. */
  get state(): Phase {
    return this.phase;
  }

  // ------------------------------------------------------------------ start-up

  private async start(): Promise<void> {
    try {
      if (this.options.proxy) {
        this.proxy = await resolveProxy(this.options.proxy, () => this.deps.proxyPassword(this.instanceId));
      }
      if (this.stopped) return;
      const auth = await this.deps.store.open(this.instanceId);
      if (this.stopped) {
        auth.release();
        return;
      }
      this.auth = auth;
      const config: UserFacingSocketConfig = {
        auth: auth.state,
        logger: baileysLogger(this.deps.logger, this.instanceId, this.deps.baileysLogLevel),
        markOnlineOnConnect: this.settings.alwaysOnline,
        // Our own sends are recorded by the runtime when they are made; receipts still arrive as updates.
        emitOwnEvents: false,
        syncFullHistory: false,
        // Retries of recent sends are served from Baileys' own bounded recent-message cache (512, 5 min).
        getMessage: async () => undefined,
        ...this.deps.caches?.forInstance(this.instanceId),
        ...(this.deps.webSocketUrl ? { waWebSocketUrl: this.deps.webSocketUrl } : {}),
        ...(this.deps.qrTimeoutMs ? { qrTimeout: this.deps.qrTimeoutMs } : {}),
        ...(this.deps.connectTimeoutMs ? { connectTimeoutMs: this.deps.connectTimeoutMs } : {}),
        ...(this.deps.browser ? { browser: this.deps.browser } : {}),
        ...(this.proxy ? { agent: this.proxy.agent as never, fetchAgent: this.proxy.agent as never } : {}),
      };
      const socket = this.deps.makeSocket(config);
      this.socket = socket;
      this.phase = 'connecting';
      socket.ws.on('open', () => {
        this.webSocketOpened = true;
      });
      socket.ws.on('CB:ack,class:message', (ack) => this.serverAcks.settle(ack.attrs));
      socket.ev.on('creds.update', () => {
        auth.saveCreds().catch((error: unknown) => {
          this.deps.logger.error(
            { err: error, instanceId: this.instanceId },
            'could not save WhatsApp credentials',
          );
        });
      });
      socket.ev.on('connection.update', (update) => this.onConnectionUpdate(update));
      socket.ev.process((events) => this.onTraffic(events));
    } catch (error) {
      const message =
        error instanceof ProxyUnavailableError
          ? `proxy unavailable, not connecting without it: ${error.message}`
          : `could not start the WhatsApp connection: ${error instanceof Error ? error.message : String(error)}`;
      this.finish(null, message);
    }
  }

  // ------------------------------------------------------------------ what the socket says

  private onConnectionUpdate(update: Partial<ConnectionState>): void {
    if (this.phase === 'closed') return;
    if (update.qr) this.onQr(update.qr);
    if (update.connection === 'open') this.onOpen();
    if (update.connection === 'close') this.onSocketClosed(update.lastDisconnect?.error);
  }

  private onQr(code: string): void {
    this.qrCount += 1;
    const ttl = this.deps.qrTimeoutMs ?? (this.qrCount === 1 ? FIRST_QR_TTL_MS : LATER_QR_TTL_MS);
    this.phase = 'qr';
    this.signal({ type: 'qr', code, expiresAt: new Date(this.deps.now().getTime() + ttl).toISOString() });
    this.firstQr.resolve();
  }

  private onOpen(): void {
    const me = this.socket?.user;
    if (!me?.id) {
      this.deps.logger.warn({ instanceId: this.instanceId }, 'WhatsApp opened without an account id');
      return;
    }
    this.phase = 'open';
    this.firstQr.reject(new Error('the instance logged in: no pairing code needed'));
    const name = me.name && me.name !== '~' ? me.name : null;
    this.signal({
      type: 'opened',
      jid: jidNormalizedUser(me.id),
      pushName: name,
      lid: me.lid ? jidNormalizedUser(me.lid) : null,
    });
    if (this.settings.alwaysOnline) this.startAlwaysOnline();
  }

  private onSocketClosed(error: Error | undefined): void {
    const { code, message } = closeReason(error, this.proxy, this.webSocketOpened);
    if (code === 401 && !this.stopped) {
      // Logged out or device removed: the saved session is worthless. Delete it before anyone hears of
      // the close, so that the next connect starts a fresh pairing.
      this.phase = 'closed';
      this.stopPresence();
      this.deps.store.remove(this.instanceId).then(
        () => this.finish(code, message),
        (removeError: unknown) => {
          this.deps.logger.error(
            { err: removeError, instanceId: this.instanceId },
            'could not delete the session',
          );
          this.finish(code, message);
        },
      );
      return;
    }
    this.finish(code, message);
  }

  private onTraffic(events: Partial<BaileysEventMap>): void {
    if (this.phase === 'closed' || this.stopped) return;
    this.probe.observe(events['messages.upsert']);
    const at = this.deps.now().toISOString();
    const self = this.socket?.user?.id ? jidNormalizedUser(this.socket.user.id) : undefined;
    let translated;
    try {
      translated = translateBatch(events as TrafficEvents, at, self);
    } catch (error) {
      this.deps.logger.warn(
        { err: error, instanceId: this.instanceId },
        'could not translate WhatsApp traffic',
      );
      return;
    }
    for (const event of translated) {
      if (isIgnoredBySettings(event, this.settings)) continue;
      if (event.type === 'ContactUpdated' && !this.contactChanged(event.data)) continue;
      this.signal({ type: 'whatsapp', event });
    }
  }

  private contactChanged(contact: { jid: string; name: string | null; notify: string | null }): boolean {
    const seen = `${contact.name ?? ''}\u0000${contact.notify ?? ''}`;
    if (this.knownContacts.get(contact.jid) === seen) return false;
    // Bounded: forgetting a contact only costs one repeated event later.
    if (this.knownContacts.size >= MAX_KNOWN_CONTACTS) this.knownContacts.clear();
    this.knownContacts.set(contact.jid, seen);
    return true;
  }

  /** The one `closed`; nothing follows it. */
  private finish(code: number | null, message: string | undefined): void {
    if (this.finished) return;
    this.release();
    // The close message does not reach the event log (ConnectionClosed records code and reason only):
    // say why a connection without a code failed here, where an operator looks.
    if (code === null && message && !this.stopped) {
      this.deps.logger.warn({ instanceId: this.instanceId }, `WhatsApp connection failed: ${message}`);
    }
    this.signal({ type: 'closed', code, ...(message ? { message } : {}) });
    this.stopped = true;
    this.deps.onFinished(this);
  }

  /** Forgets the socket and the auth handle; true the first time. */
  private release(): boolean {
    if (this.finished) return false;
    this.finished = true;
    this.phase = 'closed';
    this.stopPresence();
    this.firstQr.reject(new NotConnectedError(this.instanceId));
    this.auth?.release();
    this.auth = undefined;
    this.socket = undefined;
    this.serverAcks.clear();
    return true;
  }

  private signal(signal: WhatsAppSignal): void {
    if (this.stopped) return;
    try {
      this.listener(signal);
    } catch (error) {
      this.deps.logger.error({ err: error, instanceId: this.instanceId }, 'a WhatsApp signal listener threw');
    }
  }

  // ------------------------------------------------------------------ alwaysOnline

  private startAlwaysOnline(): void {
    if (this.presenceTimer || this.phase !== 'open') return;
    const announce = (): void => {
      this.sendOwnPresence('available').catch((error: unknown) =>
        this.deps.logger.warn({ err: error, instanceId: this.instanceId }, 'could not send presence'),
      );
    };
    announce();
    this.presenceTimer = setInterval(announce, this.deps.alwaysOnlineIntervalMs);
    this.presenceTimer.unref();
  }

  private stopPresence(): void {
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceTimer = undefined;
  }

  /**
   * Baileys skips 'available'/'unavailable' while the account has no push name (it arrives later through
   * app state), which would make alwaysOnline silently do nothing: then the bare presence node is sent.
   */
  private async sendOwnPresence(type: 'available' | 'unavailable'): Promise<void> {
    const socket = this.requireOpen();
    if (socket.user?.name) await socket.sendPresenceUpdate(type);
    else await socket.sendNode({ tag: 'presence', attrs: { type } });
  }

  // ------------------------------------------------------------------ the port

  private probeSocket(): ProbeSocket | undefined {
    const socket = this.socket;
    if (this.phase !== 'open' || this.stopped || !socket) return undefined;
    const { query, relayMessage, signalRepository, ws } = socket;
    if (!query || !relayMessage || !signalRepository || !ws.off) return undefined;
    return socket as SocketLike & ProbeSocket;
  }

  private requireOpen(): SocketLike {
    if (this.phase !== 'open' || this.stopped || !this.socket) throw new NotConnectedError(this.instanceId);
    return this.socket;
  }

  async sendText(to: string, text: string, options: TextOptions = {}): Promise<SentText> {
    const socket = this.requireOpen();
    const mentions = new Set(options.mentions ?? []);
    if (options.mentionAll && isJidGroup(to)) {
      for (const participant of (await socket.groupMetadata(to)).participants) mentions.add(participant.id);
    }
    // Baileys builds the reply's context from the quoted message's key; its content is not needed.
    const quoted: WAMessage | undefined = options.quoted
      ? {
          key: {
            remoteJid: to,
            id: options.quoted.messageId,
            fromMe: false,
            ...(options.quoted.participant ? { participant: options.quoted.participant } : {}),
          },
          message: { conversation: '' },
        }
      : undefined;
    // With an id chosen beforehand (the outbox's), the send waits for the server's acknowledgement, which
    // is where WhatsApp refuses a send (463, a rate limit): Baileys itself resolves once the stanza is written.
    const acked = options.messageId
      ? this.serverAcks.expect(options.messageId, this.deps.serverAckWaitMs ?? DEFAULT_SERVER_ACK_WAIT_MS)
      : undefined;
    // A refusal can come back before Baileys' own call resolves: it is awaited below, not unhandled.
    acked?.catch(() => undefined);
    let sent: WAMessage | undefined;
    try {
      sent = await socket.sendMessage(
        to,
        { text, ...(mentions.size > 0 ? { mentions: [...mentions] } : {}) },
        {
          ...(quoted ? { quoted } : {}),
          ...(options.messageId ? { messageId: options.messageId } : {}),
        },
      );
    } catch (error) {
      if (options.messageId) this.serverAcks.forget(options.messageId);
      throw refusalOf(error) ?? error;
    }
    if (!sent?.key.id) throw new Error('WhatsApp did not accept the message');
    options.onWritten?.();
    const ack = acked ? await acked : undefined;
    const now = this.deps.now().toISOString();
    return {
      id: sent.key.id,
      timestamp: isoFromSeconds(sent.messageTimestamp, now),
      status: ack === 'acknowledged' ? 'SERVER_ACK' : (statusName(sent.status) ?? 'PENDING'),
      ...(mentions.size > 0 ? { mentions: [...mentions] } : {}),
    };
  }

  async requestPairingCode(phone: string): Promise<string> {
    if (this.stopped || this.phase === 'closed') throw new NotConnectedError(this.instanceId);
    if (this.phase === 'open') throw new Error('the instance is already connected: no pairing code needed');
    const digits = phone.replace(/\D/g, '');
    if (digits.length < 8 || digits.length > 15) {
      throw new Error('the phone number must have 8 to 15 digits, with the country code');
    }
    await this.starting;
    if (this.auth?.paired) throw new Error('the instance is paired already: it logs in without a code');
    // The request rides on the pairing stage of the socket (after the Noise handshake, when WhatsApp
    // has sent its QR references): wait for the first QR.
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.firstQr.promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error('WhatsApp did not reach the pairing stage in time')),
            this.deps.pairingCodeWaitMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    const socket = this.socket;
    // `finished` may have flipped while waiting.
    if (!socket || this.stopped || this.finished) throw new NotConnectedError(this.instanceId);
    const code = await socket.requestPairingCode(digits);
    this.signal({ type: 'pairingCode', code, phone: digits });
    return code;
  }

  async rejectCall(callId: string, fromJid: string): Promise<void> {
    await this.requireOpen().rejectCall(callId, fromJid);
  }

  async markRead(chatJid: string, messageIds: readonly string[], senderJid?: string): Promise<void> {
    const socket = this.requireOpen();
    const group = Boolean(isJidGroup(chatJid));
    await socket.readMessages(
      messageIds.map((id) => ({
        remoteJid: chatJid,
        id,
        fromMe: false,
        ...(group && senderJid ? { participant: senderJid } : {}),
      })),
    );
  }

  async sendPresence(presence: PresenceKind, toJid?: string): Promise<void> {
    if (presence === 'available' || presence === 'unavailable') {
      await this.sendOwnPresence(presence);
      return;
    }
    const socket = this.requireOpen();
    if (!toJid) throw new Error(`presence '${presence}' needs a chat`);
    await socket.sendPresenceUpdate(presence, toJid);
  }

  applySettings(settings: AdvancedSettings): void {
    const wasOnline = this.settings.alwaysOnline;
    this.settings = settings;
    if (this.phase !== 'open' || this.stopped) return;
    if (settings.alwaysOnline && !wasOnline) this.startAlwaysOnline();
    if (!settings.alwaysOnline && wasOnline) {
      this.stopPresence();
      // Going offline lets the phone show notifications again.
      this.sendOwnPresence('unavailable').catch(() => undefined);
    }
  }

  logout(): Promise<void> {
    this.loggingOut ??= this.logoutNow();
    return this.loggingOut;
  }

  private async logoutNow(): Promise<void> {
    this.stopped = true;
    this.stopPresence();
    await this.starting;
    const socket = this.socket;
    if (socket && this.phase === 'open') {
      // Tells WhatsApp to remove the companion device (the phone's linked-devices list), then ends.
      await withTimeout(socket.logout(), 5_000).catch((error: unknown) =>
        this.deps.logger.warn(
          { err: error, instanceId: this.instanceId },
          'logout request failed; removing the session anyway',
        ),
      );
    }
    await this.deps.store.remove(this.instanceId);
    await this.teardown();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopped = true;
      this.stopPresence();
      await this.starting;
      if (this.loggingOut) await this.loggingOut.catch(() => undefined);
      await this.teardown();
    })();
    return this.closing;
  }

  private async teardown(): Promise<void> {
    const socket = this.socket;
    const first = this.release();
    if (socket) await withTimeout(Promise.resolve(socket.end(undefined)), 3_000).catch(() => undefined);
    // Ratchet state is written behind (auth-store.ts): a closed connection has its last writes done, so a
    // shutdown that closes the database next loses none of them.
    await withTimeout(this.deps.store.settled(this.instanceId), 3_000).catch(() => undefined);
    if (first) this.deps.onFinished(this);
  }
}

/**
 * The close code the instance machine sees: Baileys' status code, except null for a network failure
 * (connection refused, reset, DNS) and for a proxy that failed before the WebSocket opened.
 */
export function closeReason(
  error: Error | undefined,
  proxy: Pick<BuiltProxy, 'description'> | undefined,
  webSocketOpened: boolean,
): { code: number | null; message: string | undefined } {
  const message = error?.message;
  if (proxy && !webSocketOpened) {
    return {
      code: null,
      message: `proxy failed (${proxy.description}), not connecting without it${message ? `: ${message}` : ''}`,
    };
  }
  const boom = error as (Error & { output?: { statusCode?: number }; data?: unknown }) | undefined;
  if (isNetworkError(boom?.data) || isNetworkError(error)) return { code: null, message };
  const code = boom?.output?.statusCode;
  return { code: typeof code === 'number' ? code : null, message };
}

function isNetworkError(value: unknown): boolean {
  if (!(value instanceof Error)) return false;
  const code = (value as Error & { code?: unknown }).code;
  return typeof code === 'string' && /^E[A-Z]+/.test(code);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
