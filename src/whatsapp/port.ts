/**
 * The WhatsApp connection port (design.md §6). Nothing outside src/whatsapp/<adapter> and src/main.ts
 * knows which library speaks WhatsApp; the machine and the runtime only see this.
 *
 * One `open` = one socket attempt. The adapter reports what happens on it through the listener, in order,
 * and stops calling the listener once `close()` or `logout()` was called. Signals carry no time: the
 * runtime stamps them when it records them.
 */
import type { AdvancedSettings, ProxyView, WhatsAppEvent } from '../domain/events.ts';

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
}

export type PresenceKind = 'available' | 'unavailable' | 'composing' | 'recording' | 'paused';

export interface WhatsAppConnection {
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
