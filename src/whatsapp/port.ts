/**
 * The WhatsApp connection port. Nothing outside src/whatsapp (its adapters, and the lazy loader main.ts
 * picks) knows which library speaks WhatsApp; the machine and the runtime only see this.
 *
 * One `open` = one socket attempt. The adapter reports what happens on it through the listener, in order,
 * and stops calling the listener once `close()` or `logout()` was called. Signals carry no time: the
 * runtime stamps them when it records them.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { AdvancedSettings, ProxyView, WhatsAppEvent } from '../domain/events.ts';
import type { SqlDatabase } from '../store/sql.ts';

export interface OpenConnectionOptions {
  readonly instanceId: string;
  /**
   * The proxy as recorded, without its password: the adapter fetches the password by instance id from
   * its secret store. A proxy that cannot be used closes the connection; it never falls back to a direct
   * connection.
   */
  readonly proxy: ProxyView | null;
  /** Applied from the start (alwaysOnline, rejectCall, readMessages, ignoreGroups, ignoreStatus). */
  readonly settings: AdvancedSettings;
  /**
   * The instance has paired before. Informational: the adapter's session store decides whether a QR is
   * needed (after a scan and before `opened`, the store already holds the new credentials).
   */
  readonly paired: boolean;
}

export type WhatsAppSignal =
  /** A QR to scan: `code` is the raw QR text; it expires at `expiresAt` (ISO). */
  | { readonly type: 'qr'; readonly code: string; readonly expiresAt: string }
  /** A pairing code for `phone`, to type on the phone (8 characters, shown as XXXX-XXXX). */
  | { readonly type: 'pairingCode'; readonly code: string; readonly phone: string }
  | {
      readonly type: 'opened';
      readonly jid: string;
      readonly pushName: string | null;
      readonly lid?: string | null;
    }
  /**
   * The socket is gone. `code` is the close code (see src/domain/reason-codes.ts), null for a network
   * error, a refused proxy or a failure to start. Nothing follows a `closed`.
   */
  | { readonly type: 'closed'; readonly code: number | null; readonly message?: string }
  /** WhatsApp traffic, already filtered by ignoreGroups / ignoreStatus when the adapter applies them. */
  | { readonly type: 'whatsapp'; readonly event: WhatsAppEvent };

export type WhatsAppSignalListener = (signal: WhatsAppSignal) => void;

export interface SentText {
  /** WhatsApp message id. */
  readonly id: string;
  /** ISO time of the send. */
  readonly timestamp: string;
  /** e.g. 'PENDING', 'SERVER_ACK', 'DELIVERY_ACK'. */
  readonly status: string;
  /** The JIDs the message mentions (with mentionAll: every participant). */
  readonly mentions?: readonly string[];
}

/** Optional parts of a text message. */
export interface TextOptions {
  /** Replies to this message (its id, and its author in a group). */
  readonly quoted?: { readonly messageId: string; readonly participant?: string };
  /** JIDs mentioned in the text. */
  readonly mentions?: readonly string[];
  /** In a group: mention every participant. */
  readonly mentionAll?: boolean;
  /** Sends with this message id instead of a generated one. */
  readonly messageId?: string;
  /**
   * Called once the message is written to the socket, before WhatsApp acknowledges it. The next message to
   * the same chat may be encrypted and written from then on: it still reaches WhatsApp after this one.
   */
  readonly onWritten?: () => void;
}

export type PresenceKind = 'available' | 'unavailable' | 'composing' | 'recording' | 'paused';

/**
 * What a connection lets the health monitor measure (src/health). Optional on the port: an adapter
 * without it is reported as "not measured" on those links, never as healthy by guess.
 */
export interface ConnectionProbe {
  /** Sends a keepalive ping; resolves with the round trip in ms, rejects when no answer came in time. */
  ping(timeoutMs: number): Promise<number>;
  /**
   * An end-to-end delivery probe: a message WhatsApp must route to the account's phone and whose answer it
   * must route back to this device. Invisible (no chat entry). Resolves with the round trip in ms.
   */
  probeDelivery(timeoutMs: number): Promise<number>;
  /** Incoming messages since the connection opened: decrypted, and failed to decrypt, per sender. */
  decryption(): DecryptionCounts;
  /** Forgets the Signal sessions with a contact (all its devices); its next message starts a new one. */
  resetSession(contactJid: string): Promise<void>;
}

export interface DecryptionCounts {
  readonly decrypted: number;
  readonly failed: number;
  /** Failures per sender JID (bounded). */
  readonly failedBySender: ReadonlyMap<string, number>;
}

export interface WhatsAppConnection {
  /** Health measurements of the live connection (see ConnectionProbe); absent when unsupported. */
  readonly probe?: ConnectionProbe;
  /** Rejects when the connection is not open. `to` is a JID. */
  sendText(to: string, text: string, options?: TextOptions): Promise<SentText>;
  /**
   * Asks WhatsApp for a pairing code for `phone` (digits, with country code). Waits until the socket can
   * carry the request, resolves with the code and also reports it as a `pairingCode` signal.
   */
  requestPairingCode(phone: string): Promise<string>;
  /** Rejects an incoming call offer; resolves once WhatsApp acknowledged it. */
  rejectCall(callId: string, fromJid: string): Promise<void>;
  markRead(chatJid: string, messageIds: readonly string[], senderJid?: string): Promise<void>;
  sendPresence(presence: PresenceKind, toJid?: string): Promise<void>;
  /** Takes effect at once, without reconnecting. */
  applySettings(settings: AdvancedSettings): void;
  /** Logs out on WhatsApp (the device disappears from the phone), removes the saved session, closes. */
  logout(): Promise<void>;
  /** Closes the socket and keeps the session. Safe to call more than once, and before the socket is up. */
  close(): Promise<void>;
}

export interface WhatsAppConnector {
  /**
   * Starts a connection and returns at once; everything that happens next arrives through `listener`.
   * Failures to start (bad session, refused proxy) arrive as a `closed` signal, never as a throw.
   */
  open(options: OpenConnectionOptions, listener: WhatsAppSignalListener): WhatsAppConnection;
  /** Forgets the saved session of an instance (after logout, 401, delete). Idempotent. */
  removeSession(instanceId: string): Promise<void>;
}

export class NotConnectedError extends Error {
  override readonly name = 'NotConnectedError';
  constructor(readonly instanceId: string) {
    super(`instance ${instanceId} is not connected to WhatsApp`);
  }
}

/**
 * WhatsApp's server refused a message: `code` is its error (`463`: the account may not reach this
 * contact, a restriction; `429`: rate limit; others). The outbox classifies it (src/runtime/outbox).
 */
export class SendRefusedError extends Error {
  override readonly name = 'SendRefusedError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What a WhatsApp adapter may need: the database for its session store and the key that seals it. */
export interface ConnectorDependencies {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: SqlDatabase;
  /** 32 bytes (SESSION_ENCRYPTION_KEY or the one generated under DATA_DIR). */
  readonly sessionKey: Buffer;
  /** SESSION_ENCRYPTION_KEY_PREVIOUS during a rotation. */
  readonly previousSessionKey?: Buffer | undefined;
  /** Looks up an instance's proxy password (kept sealed outside the event log). */
  readonly proxyPassword: (instanceId: string) => Promise<string | undefined>;
  /** Cluster mode: session writes carry this node's lease (undefined: not fenced). */
  readonly sessionFence?: SessionFencing | undefined;
}

/** This node's hold on an instance's lease (cluster mode), carried by every session write. */
export interface SessionFence {
  readonly nodeId: string;
  readonly epoch: number;
}

/** Cluster mode: how an adapter fences the WhatsApp session writes of an instance (src/cluster). */
export interface SessionFencing {
  tokenOf(instanceId: string): Promise<SessionFence | undefined>;
  /** Called when the database refused a session write: the lease is gone. */
  refused(instanceId: string): void;
}

/** Builds an adapter once the database and keys exist (main.ts calls it while starting). */
export type ConnectorFactory = (dependencies: ConnectorDependencies) => Promise<WhatsAppConnector>;

/** The connector itself, or what the factory makes of the dependencies (Baileys loads its auth store there). */
export async function resolveConnector(
  connector: WhatsAppConnector | ConnectorFactory,
  dependencies: ConnectorDependencies,
): Promise<WhatsAppConnector> {
  return typeof connector === 'function' ? connector(dependencies) : connector;
}
