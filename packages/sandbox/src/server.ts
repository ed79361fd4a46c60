/**
 * The sandbox server: accepts client WebSockets, owns the accounts and their devices, and dispatches
 * each stanza to the module that understands it. Everything that crosses devices (delivering a stanza,
 * queueing it for an offline device, kicking a device) goes through here.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { ClientConnection, streamErrorNode, type ConnectionHandler } from './connection.ts';
import { createServerIdentity, type ServerIdentity } from './certs.ts';
import type { ResolvedOptions } from './context.ts';
import { generateKeyPair } from './crypto.ts';
import { lidUser, phoneNumber, stanzaId } from './ids.ts';
import type { Companion } from './model.ts';
import { Account, LID_SERVER, PN_SERVER, SERVER_JID, type Device } from './model.ts';
import { node, unixSeconds, type BinaryNode } from './nodes.ts';
import type { HandshakeResult } from './noise.ts';
import { handleIq, type IqContext } from './iq.ts';
import { beginRegistration, dropRegistration, Pairings } from './pairing.ts';
import { handleClientMessage, handleClientReceipt } from './routing.ts';
import { handleClientCall, handleClientChatState, handleClientPresence } from './signals.ts';
import { pushFirstLoginSync } from './history.ts';
import { GroupRegistry } from './groups.ts';
import { AppStates } from './app-state.ts';
import { jidDecode } from './wa.ts';
import { SandboxError } from './errors.ts';
import { DeviceFaults } from './faults.ts';
import {
  KICK_REASONS,
  type KickReason,
  type LoginRecord,
  type PhoneMessage,
  type PhoneReceipt,
  type SandboxLogger,
  type SandboxOptions,
} from './types.ts';

const MAX_OFFLINE_QUEUE = 1000;
/** Logins kept for GET /control/logins (a restart of 1,000 devices fits, with room). */
const LOGIN_LOG_SIZE = 20_000;

export class SandboxServer implements ConnectionHandler, IqContext {
  readonly identity: ServerIdentity;
  readonly options: ResolvedOptions;
  readonly logger: SandboxLogger;
  private readonly accountsByPn = new Map<string, Account>();
  private readonly accountsByLid = new Map<string, Account>();
  readonly connections = new Set<ClientConnection>();
  /** The latest logins (at most LOGIN_LOG_SIZE): when each socket opened and when it logged in. */
  readonly loginLog: LoginRecord[] = [];
  readonly groups = new GroupRegistry(this);
  readonly appStates = new AppStates(this);
  readonly pairings = new Pairings();
  /** Fault modes set through the control API (faults.ts). */
  readonly faults = new DeviceFaults();
  /** `phone-message` (account, PhoneMessage) and `phone-receipt` (account, PhoneReceipt), for waiting in tests. */
  readonly events = new EventEmitter();
  /** How late the event loop runs (for stats); sampled every 20 ms. */
  readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 16 << 20,
  });

  constructor(options: SandboxOptions, logger: SandboxLogger) {
    this.identity = createServerIdentity();
    this.logger = logger;
    this.loopDelay.enable();
    this.options = {
      smallPreKeyBatches: options.smallPreKeyBatches ?? false,
      historySync: options.historySync ?? true,
      closeGraceMs: options.closeGraceMs ?? 2000,
    };
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const conn = new ClientConnection(ws, this.identity, this, this.logger, this.options.closeGraceMs);
      this.connections.add(conn);
    });
  }

  async close(): Promise<void> {
    this.loopDelay.disable();
    for (const conn of this.connections) conn.terminate();
    this.connections.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  // ---- accounts and devices -------------------------------------------------------------------

  createAccount(opts: { phoneNumber?: string; name?: string; lid?: string } = {}): Account {
    const pn = (opts.phoneNumber ?? phoneNumber()).replace(/[^0-9]/g, '');
    if (!pn) throw new SandboxError(400, 'phoneNumber must contain digits');
    if (this.accountsByPn.has(pn)) throw new SandboxError(409, `account ${pn} exists`);
    let lid = opts.lid?.replace(/[^0-9]/g, '') ?? lidUser();
    while (!opts.lid && this.accountsByLid.has(lid)) lid = lidUser();
    if (this.accountsByLid.has(lid)) throw new SandboxError(409, `LID ${lid} is taken`);
    const account = new Account(
      pn,
      lid,
      opts.name ?? `User ${pn.slice(-4)}`,
      generateKeyPair(),
      { keyId: randomBytes(6), keyData: randomBytes(32), timestamp: Date.now() },
      unixSeconds(),
    );
    this.accountsByPn.set(pn, account);
    this.accountsByLid.set(lid, account);
    return account;
  }

  accounts(): Account[] {
    return [...this.accountsByPn.values()];
  }

  /** An account by phone number, `number@s.whatsapp.net`, `lid@lid` (any device suffix), or LID digits. */
  findAccount(ref: string): Account | undefined {
    if (ref.includes('@')) {
      const decoded = jidDecode(ref);
      if (!decoded?.user) return undefined;
      if (decoded.server === LID_SERVER) return this.accountsByLid.get(decoded.user);
      if (decoded.server === PN_SERVER || decoded.server === 'c.us')
        return this.accountsByPn.get(decoded.user);
      return undefined;
    }
    const digits = ref.replace(/^\+/, '');
    return this.accountsByPn.get(digits) ?? this.accountsByLid.get(digits);
  }

  account(ref: string): Account {
    const account = this.findAccount(ref);
    if (!account) throw new SandboxError(404, `no account ${ref}`);
    return account;
  }

  /** The device a JID names: device 0 is the phone; a JID without a device suffix names the phone too. */
  findDevice(jid: string): Device | undefined {
    const account = this.findAccount(jid);
    if (!account) return undefined;
    const device = jidDecode(jid)?.device ?? 0;
    if (device === 0) return account.phone;
    const companion = account.companions.get(device);
    return companion && !companion.removed ? companion : undefined;
  }

  findCompanion(jid: string): Companion | undefined {
    const device = this.findDevice(jid);
    return device?.kind === 'companion' ? device : undefined;
  }

  // ---- delivery ---------------------------------------------------------------------------------

  /**
   * Sends a stanza to a companion now if it is logged in and active, or keeps it for its next login
   * (delivered with `offline` set, like WhatsApp's offline queue).
   */
  deliver(companion: Companion, stanza: BinaryNode): void {
    if (companion.removed) return;
    const conn = companion.connection;
    // A muted device is, to the router, a device that is not there: what it should get waits for it.
    if (conn?.isOpen && conn.active && !this.faults.has(companion, 'mute')) {
      conn.send(this.faults.tamper(companion, stanza));
      return;
    }
    if (companion.offlineQueue.length >= MAX_OFFLINE_QUEUE) companion.offlineQueue.shift();
    companion.offlineQueue.push(stanza);
  }

  /** Sends to every linked device of an account (e.g. a notification every device must see). */
  deliverToAccount(account: Account, build: (companion: Companion) => BinaryNode, except?: Companion): void {
    for (const companion of account.activeCompanions()) {
      if (companion !== except) this.deliver(companion, build(companion));
    }
  }

  /** Sends straight to a live connection, never queued (server bookkeeping such as prekey counts). */
  sendIfOnline(companion: Companion, stanza: BinaryNode): void {
    if (companion.connection?.isOpen) companion.connection.send(stanza);
  }

  // ---- connection lifecycle -------------------------------------------------------------------

  onHandshake(conn: ClientConnection, result: HandshakeResult): void {
    const { payload } = result;
    if (payload.username !== null && payload.username !== undefined && Number(payload.device ?? -1) >= 0) {
      this.login(conn, String(payload.username), Number(payload.device ?? 0));
      return;
    }
    if (payload.devicePairingData) {
      beginRegistration(this, conn, payload);
      return;
    }
    conn.streamError(node('failure', { reason: 401 }));
  }

  private login(conn: ClientConnection, pn: string, deviceId: number): void {
    const account = this.accountsByPn.get(pn);
    const companion = account?.companions.get(deviceId);
    if (
      !account ||
      !companion ||
      companion.removed ||
      !conn.clientStaticKey?.equals(companion.noisePublicKey)
    ) {
      this.logger.info('login refused', { pn, deviceId });
      conn.streamError(node('failure', { reason: 401, location: 'sandbox' }));
      return;
    }
    if (account.banned) {
      conn.streamError(node('failure', { reason: 403, location: 'sandbox' }));
      return;
    }
    const previous = companion.connection;
    companion.logins++;
    if (previous && previous !== conn && previous.isOpen) {
      companion.replaced++;
      // Same credentials on a second socket: the older one is replaced, as on WhatsApp.
      previous.companion = undefined;
      previous.streamError(streamErrorNode(undefined, node('conflict', { type: 'replaced' })));
    }
    companion.connection = conn;
    conn.companion = companion;
    this.loginLog.push({ device: companion.pnJid, openedAt: conn.openedAt, loggedInAt: Date.now() });
    if (this.loginLog.length > LOGIN_LOG_SIZE) this.loginLog.splice(0, this.loginLog.length - LOGIN_LOG_SIZE);
    this.faults.loggedIn(companion);
    conn.send(
      node('success', {
        t: unixSeconds(),
        props: 1,
        abprops: 1,
        location: 'sandbox',
        creation: account.createdAt,
        lid: account.lidJid,
      }),
    );
    this.logger.debug('logged in', { device: companion.pnJid });
  }

  /** The client said `passive/active`: flush what waited for it and tell it the backlog is done. */
  activate(conn: ClientConnection): void {
    const companion = conn.companion;
    if (!companion || conn.active) return;
    conn.active = true;
    const backlog = this.faults.has(companion, 'mute') ? [] : companion.offlineQueue.splice(0);
    for (const stanza of backlog)
      conn.send(this.faults.tamper(companion, { ...stanza, attrs: { ...stanza.attrs, offline: '1' } }));
    conn.send(node('ib', {}, [node('offline', { count: backlog.length })]));
    const firstLogin = !companion.loggedInOnce;
    companion.loggedInOnce = true;
    if (firstLogin && this.options.historySync) {
      pushFirstLoginSync(this, companion).catch((err) =>
        this.logger.warn('first-login sync failed', { device: companion.pnJid, err: String(err) }),
      );
    }
  }

  async onStanza(conn: ClientConnection, stanza: BinaryNode): Promise<void> {
    switch (stanza.tag) {
      case 'iq':
        return handleIq(this, conn, stanza);
      case 'message':
        return handleClientMessage(this, conn, stanza);
      case 'receipt':
        return handleClientReceipt(this, conn, stanza);
      case 'call':
        return handleClientCall(this, conn, stanza);
      case 'presence':
        return handleClientPresence(this, conn, stanza);
      case 'chatstate':
        return handleClientChatState(this, conn, stanza);
      case 'ack':
      case 'ib':
        return; // recorded in the device log; nothing to answer
      default:
        this.logger.debug('unhandled stanza', { tag: stanza.tag });
    }
  }

  onClose(conn: ClientConnection): void {
    this.connections.delete(conn);
    dropRegistration(this, conn);
    const companion = conn.companion;
    if (companion?.connection === conn) {
      companion.connection = undefined;
      if (companion.account.activeCompanions().every((c) => !c.connection)) {
        companion.account.lastSeen = unixSeconds();
      }
    }
  }

  // ---- disconnects --------------------------------------------------------------------------------

  /** Drops a device's connection for the given reason (see `KickReason`). Returns whether it was online. */
  kick(companion: Companion, reason: KickReason | number): boolean {
    const code = typeof reason === 'number' ? reason : KICK_REASONS[reason];
    if (code === undefined) throw new SandboxError(400, `unknown reason ${String(reason)}`);
    if (code === 401) this.removeCompanion(companion, 'device_removed');
    if (code === 403) companion.account.banned = true;
    const conn = companion.connection;
    if (!conn?.isOpen) return false;
    switch (code) {
      case 428:
        conn.close();
        break;
      case 440:
        conn.streamError(streamErrorNode(undefined, node('conflict', { type: 'replaced' })));
        break;
      case 401:
        conn.streamError(streamErrorNode(401, node('conflict', { type: 'device_removed' })));
        break;
      case 500:
        conn.streamError(streamErrorNode(undefined, node('bad-session')));
        break;
      case 411:
        conn.send(node('ib', {}, [node('downgrade_webclient')]));
        conn.closeAfterGrace();
        break;
      default:
        conn.streamError(streamErrorNode(code));
    }
    return true;
  }

  /** A muted device was unmuted while online: what waited for it is delivered now, marked offline. */
  flushQueued(companion: Companion): void {
    const conn = companion.connection;
    if (!conn?.isOpen || !conn.active || this.faults.has(companion, 'mute')) return;
    for (const stanza of companion.offlineQueue.splice(0))
      conn.send(this.faults.tamper(companion, { ...stanza, attrs: { ...stanza.attrs, offline: '1' } }));
  }

  removeCompanion(companion: Companion, reason: string): void {
    if (companion.removed) return;
    companion.removed = true;
    companion.offlineQueue.length = 0;
    this.logger.info('device removed', { device: companion.pnJid, reason });
    // The account's other devices learn that the device list changed.
    this.deliverToAccount(
      companion.account,
      () =>
        node(
          'notification',
          { from: companion.account.pnJid, type: 'devices', id: stanzaId(), t: unixSeconds() },
          [node('remove', {}, [node('device', { jid: companion.pnJid })])],
        ),
      companion,
    );
  }

  emitPhoneMessage(account: Account, message: PhoneMessage): void {
    this.events.emit('phone-message', account, message);
  }

  emitPhoneReceipt(account: Account, receipt: PhoneReceipt): void {
    this.events.emit('phone-receipt', account, receipt);
  }

  serverIq(type: string, xmlns: string, content: BinaryNode[]): BinaryNode {
    return node('iq', { from: SERVER_JID, type, id: stanzaId(), xmlns, t: unixSeconds() }, content);
  }
}
