/**
 * A deterministic, in-process WhatsApp connector for unit and API tests. Nothing happens unless a test
 * scripts it (except, by default, that a connection with a saved session opens by itself, as a real one
 * does): issue a QR, scan it, hand out a pairing code, open, close with any code, deliver any WhatsApp
 * event. It keeps sessions per instance, records every text sent and every command, and counts live
 * connections so tests can assert that an instance never holds two.
 */
import type { AdvancedSettings, WhatsAppEvent } from '../domain/events.ts';
import {
  NotConnectedError,
  type OpenConnectionOptions,
  type PresenceKind,
  type SentText,
  type TextOptions,
  type WhatsAppConnection,
  type WhatsAppConnector,
  type WhatsAppSignal,
  type WhatsAppSignalListener,
} from './port.ts';

export interface FakeAccount {
  readonly jid: string;
  readonly pushName: string | null;
  readonly lid?: string | null;
}

export const DEFAULT_FAKE_ACCOUNT: FakeAccount = {
  jid: '5511999999999@s.whatsapp.net',
  pushName: 'Fake Phone',
  lid: '100000000000001@lid',
};

export interface FakeConnectorOptions {
  /** A connection opened with a saved session reports `opened` by itself, on the next microtask. Default true. */
  readonly autoResume?: boolean;
  /** A connection opened without a session shows its first QR by itself, on the next microtask. Default false. */
  readonly autoQr?: boolean;
  /** Clock for QR expiry and message timestamps. Default: the system clock. */
  readonly now?: () => Date;
  /** QR lifetime (ms). Default 60 000, as WhatsApp's first QR. */
  readonly qrTtlMs?: number;
}

export interface SentTextRecord {
  readonly instanceId: string;
  readonly to: string;
  readonly text: string;
  readonly id: string;
  readonly timestamp: string;
  readonly options?: TextOptions;
}

export type FakeCommandRecord =
  | { readonly type: 'requestPairingCode'; readonly phone: string; readonly code: string }
  | { readonly type: 'rejectCall'; readonly callId: string; readonly fromJid: string }
  | { readonly type: 'markRead'; readonly chatJid: string; readonly messageIds: readonly string[] }
  | { readonly type: 'sendPresence'; readonly presence: PresenceKind; readonly toJid?: string }
  | { readonly type: 'applySettings'; readonly settings: AdvancedSettings }
  | { readonly type: 'logout' };

export type FakeConnectionState = 'connecting' | 'qr' | 'open' | 'closed';

export class FakeConnection implements WhatsAppConnection {
  private stateNow: FakeConnectionState = 'connecting';
  private qrIssued = 0;
  /** Commands received through the port, in order. */
  readonly commands: FakeCommandRecord[] = [];
  /** Every signal this connection reported, in order. */
  readonly signals: WhatsAppSignal[] = [];
  settings: AdvancedSettings;

  constructor(
    private readonly connector: FakeWhatsAppConnector,
    readonly options: OpenConnectionOptions,
    private readonly listener: WhatsAppSignalListener,
    /** 1-based rank among all connections this connector opened. */
    readonly serial: number,
  ) {
    this.settings = options.settings;
  }

  get instanceId(): string {
    return this.options.instanceId;
  }

  get state(): FakeConnectionState {
    return this.stateNow;
  }

  get live(): boolean {
    return this.stateNow !== 'closed';
  }

  // ------------------------------------------------------------------ scripting (the "WhatsApp side")

  /** Shows a QR (first or rotation). Returns the QR text. */
  issueQr(code = `fake-qr-${this.instanceId}-${this.serial}-${this.qrIssued + 1}`): string {
    this.requireLive('issue a QR');
    this.qrIssued += 1;
    this.stateNow = 'qr';
    const expiresAt = new Date(this.connector.now().getTime() + this.connector.qrTtlMs).toISOString();
    this.signal({ type: 'qr', code, expiresAt });
    return code;
  }

  /**
   * The phone scans the QR (or types the pairing code). The session is saved at once, as Baileys does on
   * pair-success. With `restart` the connection then closes with 515 like real WhatsApp, and the next
   * connection logs in with the saved session; without it, the connection opens directly.
   */
  scan(account: FakeAccount = DEFAULT_FAKE_ACCOUNT, { restart = false }: { restart?: boolean } = {}): void {
    this.requireLive('scan');
    this.connector.saveSession(this.instanceId, account);
    if (restart) this.closeWith(515, 'restart required');
    else this.openAs(account);
  }

  /** Logs in with the saved session (what autoResume does by itself). */
  resume(): void {
    const account = this.connector.session(this.instanceId);
    if (!account) throw new Error(`fake WhatsApp: instance ${this.instanceId} has no saved session`);
    this.openAs(account);
  }

  /** Closes from the WhatsApp side with a close code (null = network error). 401 forgets the session. */
  closeWith(code: number | null, message?: string): void {
    this.requireLive('close');
    if (code === 401) this.connector.forgetSession(this.instanceId);
    this.signal({ type: 'closed', code, ...(message === undefined ? {} : { message }) });
    this.markClosed();
  }

  /** Delivers WhatsApp traffic (a message, a receipt, a call...). */
  deliver(event: WhatsAppEvent): void {
    this.requireLive('deliver an event');
    this.signal({ type: 'whatsapp', event });
  }

  get qrCount(): number {
    return this.qrIssued;
  }

  // ------------------------------------------------------------------ the port

  async sendText(to: string, text: string, options?: TextOptions): Promise<SentText> {
    if (this.stateNow !== 'open') throw new NotConnectedError(this.instanceId);
    return this.connector.recordText(this.instanceId, to, text, options);
  }

  async requestPairingCode(phone: string): Promise<string> {
    if (!this.live) throw new NotConnectedError(this.instanceId);
    const code = this.connector.nextPairingCode();
    this.commands.push({ type: 'requestPairingCode', phone, code });
    this.signal({ type: 'pairingCode', code, phone });
    return code;
  }

  async rejectCall(callId: string, fromJid: string): Promise<void> {
    this.requireOpen();
    this.commands.push({ type: 'rejectCall', callId, fromJid });
  }

  async markRead(chatJid: string, messageIds: readonly string[]): Promise<void> {
    this.requireOpen();
    this.commands.push({ type: 'markRead', chatJid, messageIds: [...messageIds] });
  }

  async sendPresence(presence: PresenceKind, toJid?: string): Promise<void> {
    this.requireOpen();
    this.commands.push({ type: 'sendPresence', presence, ...(toJid === undefined ? {} : { toJid }) });
  }

  applySettings(settings: AdvancedSettings): void {
    this.settings = settings;
    this.commands.push({ type: 'applySettings', settings });
  }

  async logout(): Promise<void> {
    this.commands.push({ type: 'logout' });
    this.connector.forgetSession(this.instanceId);
    this.markClosed();
  }

  async close(): Promise<void> {
    this.markClosed();
  }

  // ------------------------------------------------------------------ internals

  private openAs(account: FakeAccount): void {
    this.stateNow = 'open';
    this.signal({ type: 'opened', jid: account.jid, pushName: account.pushName, lid: account.lid ?? null });
  }

  private signal(signal: WhatsAppSignal): void {
    if (!this.live) return;
    this.signals.push(signal);
    this.listener(signal);
  }

  private markClosed(): void {
    if (this.stateNow === 'closed') return;
    this.stateNow = 'closed';
    this.connector.connectionClosed(this);
  }

  private requireLive(what: string): void {
    if (!this.live)
      throw new Error(`fake WhatsApp: cannot ${what} on a closed connection of ${this.instanceId}`);
  }

  private requireOpen(): void {
    if (this.stateNow !== 'open') throw new NotConnectedError(this.instanceId);
  }
}

export class FakeWhatsAppConnector implements WhatsAppConnector {
  private readonly sessions = new Map<string, FakeAccount>();
  private readonly all: FakeConnection[] = [];
  private readonly liveByInstance = new Map<string, Set<FakeConnection>>();
  private readonly waiters: Array<{ instanceId: string; resolve: (c: FakeConnection) => void }> = [];
  private liveTotal = 0;
  private maxLiveTotal = 0;
  private readonly maxLivePerInstance = new Map<string, number>();
  private messageSerial = 0;
  private pairingSerial = 0;
  /** Every text sent through any connection, in order. */
  readonly sent: SentTextRecord[] = [];
  /** removeSession calls, in order. */
  readonly removedSessions: string[] = [];
  readonly now: () => Date;
  readonly qrTtlMs: number;

  constructor(private readonly config: FakeConnectorOptions = {}) {
    this.now = config.now ?? (() => new Date());
    this.qrTtlMs = config.qrTtlMs ?? 60_000;
  }

  open(options: OpenConnectionOptions, listener: WhatsAppSignalListener): FakeConnection {
    const connection = new FakeConnection(this, options, listener, this.all.length + 1);
    this.all.push(connection);
    const live = this.liveByInstance.get(options.instanceId) ?? new Set<FakeConnection>();
    live.add(connection);
    this.liveByInstance.set(options.instanceId, live);
    this.liveTotal += 1;
    this.maxLiveTotal = Math.max(this.maxLiveTotal, this.liveTotal);
    this.maxLivePerInstance.set(
      options.instanceId,
      Math.max(this.maxLivePerInstance.get(options.instanceId) ?? 0, live.size),
    );
    const hasSession = this.sessions.has(options.instanceId);
    if (hasSession && (this.config.autoResume ?? true)) {
      queueMicrotask(() => {
        if (connection.state === 'connecting') connection.resume();
      });
    } else if (!hasSession && this.config.autoQr) {
      queueMicrotask(() => {
        if (connection.state === 'connecting') connection.issueQr();
      });
    }
    for (const waiter of this.waiters.filter((w) => w.instanceId === options.instanceId)) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(connection);
    }
    return connection;
  }

  async removeSession(instanceId: string): Promise<void> {
    this.removedSessions.push(instanceId);
    this.sessions.delete(instanceId);
  }

  // ------------------------------------------------------------------ inspection and scripting

  /** The instance's live connection (the newest, if a bug ever left two). */
  connection(instanceId: string): FakeConnection | undefined {
    return [...(this.liveByInstance.get(instanceId) ?? [])].at(-1);
  }

  /** Like connection(), but fails the test when there is none. */
  live(instanceId: string): FakeConnection {
    const connection = this.connection(instanceId);
    if (!connection) throw new Error(`fake WhatsApp: instance ${instanceId} has no live connection`);
    return connection;
  }

  /** Resolves with the next connection opened for the instance (or the live one, if any). */
  nextConnection(
    instanceId: string,
    { includeLive = true }: { includeLive?: boolean } = {},
  ): Promise<FakeConnection> {
    const current = includeLive ? this.connection(instanceId) : undefined;
    if (current) return Promise.resolve(current);
    return new Promise((resolve) => this.waiters.push({ instanceId, resolve }));
  }

  /** Every connection ever opened (for an instance, or all), oldest first. */
  connections(instanceId?: string): readonly FakeConnection[] {
    return instanceId === undefined ? [...this.all] : this.all.filter((c) => c.instanceId === instanceId);
  }

  liveCount(instanceId?: string): number {
    return instanceId === undefined ? this.liveTotal : (this.liveByInstance.get(instanceId)?.size ?? 0);
  }

  /** The most connections that were live at once (for an instance, or in total). */
  maxLiveCount(instanceId?: string): number {
    return instanceId === undefined ? this.maxLiveTotal : (this.maxLivePerInstance.get(instanceId) ?? 0);
  }

  openCount(instanceId?: string): number {
    return this.connections(instanceId).length;
  }

  hasSession(instanceId: string): boolean {
    return this.sessions.has(instanceId);
  }

  session(instanceId: string): FakeAccount | undefined {
    return this.sessions.get(instanceId);
  }

  /** Seeds a saved session, as if the instance had paired before. */
  saveSession(instanceId: string, account: FakeAccount = DEFAULT_FAKE_ACCOUNT): void {
    this.sessions.set(instanceId, account);
  }

  sentBy(instanceId: string): readonly SentTextRecord[] {
    return this.sent.filter((s) => s.instanceId === instanceId);
  }

  // ------------------------------------------------------------------ used by FakeConnection

  /** @internal */
  forgetSession(instanceId: string): void {
    this.sessions.delete(instanceId);
  }

  /** @internal */
  connectionClosed(connection: FakeConnection): void {
    if (this.liveByInstance.get(connection.instanceId)?.delete(connection)) this.liveTotal -= 1;
  }

  /** @internal */
  recordText(instanceId: string, to: string, text: string, options?: TextOptions): SentText {
    this.messageSerial += 1;
    const id = options?.messageId ?? `FAKE${this.messageSerial.toString(16).toUpperCase().padStart(12, '0')}`;
    const timestamp = this.now().toISOString();
    this.sent.push({ instanceId, to, text, id, timestamp, ...(options ? { options } : {}) });
    return {
      id,
      timestamp,
      status: 'SERVER_ACK',
      ...(options?.mentions ? { mentions: options.mentions } : {}),
    };
  }

  /** @internal 8 characters, like WhatsApp's (Crockford-style alphabet, no I, L, O, U). */
  nextPairingCode(): string {
    this.pairingSerial += 1;
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    let n = this.pairingSerial * 2654435761;
    let code = '';
    for (let i = 0; i < 8; i++) {
      code += alphabet[n % 32];
      n = Math.floor(n / 32) + 7 * (i + 1);
    }
    return code;
  }
}
