/**
 * The domain event vocabulary. Two streams per instance:
 * - `instance-<id>`: lifecycle and configuration, emitted by the instance machine (plus InstanceCreated
 *   and InstanceDeleted written by the runtime);
 * - `wa-<id>`: WhatsApp traffic (messages, receipts, presence...), appended by the runtime from the
 *   connection's signals.
 * Payloads never carry secrets: no instance token, no proxy password, no session keys.
 */

import { OUTBOX_STREAM_PREFIX } from './outbox.ts';

export const instanceStream = (instanceId: string): string => `instance-${instanceId}`;
export const whatsappStream = (instanceId: string): string => `wa-${instanceId}`;
export const INSTANCE_STREAM_PREFIX = 'instance-';

/** The streams an instance owns alone (its log, its WhatsApp traffic, its outbox): never reused. */
export const INSTANCE_OWNED_STREAM_PREFIXES: readonly string[] = [
  INSTANCE_STREAM_PREFIX,
  whatsappStream(''),
  OUTBOX_STREAM_PREFIX,
];
export const WHATSAPP_STREAM_PREFIX = 'wa-';

/** Extracts the instance id from either of its stream ids. */
export function instanceIdOfStream(stream: string): string | undefined {
  if (stream.startsWith(INSTANCE_STREAM_PREFIX)) return stream.slice(INSTANCE_STREAM_PREFIX.length);
  if (stream.startsWith(WHATSAPP_STREAM_PREFIX)) return stream.slice(WHATSAPP_STREAM_PREFIX.length);
  return undefined;
}

export type ProxyProtocol = 'http' | 'https' | 'socks5';

/** A proxy as the event log and the API see it: the password is kept apart (see src/runtime secrets). */
export interface ProxyView {
  readonly host: string;
  readonly port: number;
  readonly protocol: ProxyProtocol;
  readonly username?: string;
  readonly hasPassword: boolean;
}

export interface AdvancedSettings {
  readonly alwaysOnline: boolean;
  readonly rejectCall: boolean;
  readonly msgRejectCall: string;
  readonly readMessages: boolean;
  readonly ignoreGroups: boolean;
  readonly ignoreStatus: boolean;
}

export const DEFAULT_ADVANCED_SETTINGS: AdvancedSettings = {
  alwaysOnline: false,
  rejectCall: false,
  msgRejectCall: '',
  readMessages: false,
  ignoreGroups: false,
  ignoreStatus: false,
};

/**
 * Only the known settings, each of its own type: whatever else a caller or an old event carried is
 * dropped, so unknown keys never reach the log (they used to be stored and merged into every later
 * change, growing the log quadratically).
 */
export function pickAdvancedSettings(value: unknown): Partial<AdvancedSettings> {
  const source = (value && typeof value === 'object' ? value : {}) as Record<string, unknown>;
  const picked: { -readonly [K in keyof AdvancedSettings]?: AdvancedSettings[K] } = {};
  for (const key of Object.keys(DEFAULT_ADVANCED_SETTINGS) as Array<keyof AdvancedSettings>) {
    const v = source[key];
    if (typeof v === typeof DEFAULT_ADVANCED_SETTINGS[key]) (picked as Record<string, unknown>)[key] = v;
  }
  return picked;
}

/** Where an instance's events go. `events` holds canonical names or 'ALL'. */
export interface SinkSettings {
  readonly webhookUrl: string | null;
  readonly events: readonly string[];
  readonly rabbitmqEnable: boolean;
  readonly websocketEnable: boolean;
  readonly natsEnable: boolean;
}

export const DEFAULT_SINK_SETTINGS: SinkSettings = {
  webhookUrl: null,
  events: ['MESSAGE'],
  rabbitmqEnable: false,
  websocketEnable: false,
  natsEnable: false,
};

/** Why a connection ended, as recorded. */
export type DisconnectReason =
  | 'restart_required' // 515
  | 'connection_lost' // 428, 408, 500, 503, network errors
  | 'logged_out' // 401 / device removed
  | 'replaced' // 440
  | 'banned' // 403
  | 'qr_timeout' // QR attempts exhausted
  | 'user_disconnect' // POST /instance/disconnect
  | 'user_logout' // POST /instance/logout
  | 'shutdown'; // the app stopped

/** Every payload carries `at` (ISO time), supplied by the caller so machines stay clock-free. */
interface At {
  readonly at: string;
}

export interface InstanceEventMap {
  InstanceCreated: At & {
    readonly instanceId: string;
    readonly name: string;
    readonly createdBy: 'admin';
    readonly advancedSettings: AdvancedSettings;
    readonly sinks: SinkSettings;
    readonly proxy: ProxyView | null;
  };
  EventSinksConfigured: At & { readonly sinks: SinkSettings };
  AdvancedSettingsChanged: At & { readonly settings: AdvancedSettings };
  ProxyConfigured: At & { readonly proxy: ProxyView };
  ProxyRemoved: At;
  /** A connection attempt starts (connect, reconnect, restart after 515, backoff retry, restore on boot). */
  ConnectionStarting: At & {
    readonly trigger: 'connect' | 'reconnect' | 'restart' | 'retry' | 'restore';
    readonly attempt: number;
  };
  QrCodeIssued: At & {
    /** The raw QR text (what a phone scans). The API renders the PNG from it. */
    readonly code: string;
    readonly expiresAt: string;
    /** 1 for the first QR of this attempt (QR_CODE), more for rotations (QRCODE_UPDATED). */
    readonly count: number;
  };
  PairingCodeIssued: At & { readonly code: string; readonly phone: string };
  InstanceOpened: At & {
    readonly jid: string;
    readonly pushName: string | null;
    readonly lid?: string | null;
  };
  ConnectionClosed: At & {
    readonly code: number | null;
    readonly reason: DisconnectReason;
    /** True when the machine will try again by itself (515 at once, transient codes after a backoff). */
    readonly willReconnect: boolean;
    readonly retryInMs: number | null;
    /** Why, in words, when the connection said (e.g. a refused proxy); never holds credentials. */
    readonly message?: string;
  };
  /** The WhatsApp session is gone (logout, 401, device removed): the next connect needs a QR. */
  SessionRemoved: At & { readonly reason: 'logged_out' | 'user_logout' | 'deleted' };
  InstanceDeleted: At & { readonly by: 'admin' };
}

export type InstanceEventType = keyof InstanceEventMap;
export type InstanceEvent = {
  [K in InstanceEventType]: { readonly type: K; readonly data: InstanceEventMap[K] };
}[InstanceEventType];

/** WhatsApp traffic, stream `wa-<id>`. `data` follows the specification's event payloads. */
export interface WhatsAppEventMap {
  MessageReceived: At & {
    readonly messageId: string;
    readonly chatJid: string;
    readonly senderJid: string;
    readonly fromMe: false;
    readonly pushName: string | null;
    readonly messageType: string;
    readonly text: string | null;
    readonly timestamp: string;
    readonly isGroup: boolean;
  };
  MessageSent: At & {
    readonly messageId: string;
    readonly chatJid: string;
    readonly messageType: string;
    readonly text: string | null;
    readonly timestamp: string;
    readonly status: string;
  };
  MessageUpdated: At & {
    readonly messageId: string;
    readonly chatJid: string;
    readonly status?: string;
    readonly edited?: boolean;
    readonly deleted?: boolean;
  };
  MessageReacted: At & {
    readonly messageId: string;
    readonly chatJid: string;
    readonly senderJid: string;
    readonly emoji: string;
  };
  GroupUpdated: At & { readonly groupJid: string; readonly changes: Readonly<Record<string, unknown>> };
  GroupParticipantsUpdated: At & {
    readonly groupJid: string;
    readonly action: 'add' | 'remove' | 'promote' | 'demote' | 'modify';
    readonly participants: readonly string[];
  };
  PresenceUpdated: At & {
    readonly chatJid: string;
    readonly participantJid: string;
    readonly presence: string;
  };
  CallReceived: At & {
    readonly callId: string;
    readonly fromJid: string;
    readonly isVideo: boolean;
    readonly status: string;
    readonly rejected: boolean;
  };
  ContactUpdated: At & { readonly jid: string; readonly name: string | null; readonly notify: string | null };
  LabelUpdated: At & {
    readonly labelId: string;
    readonly name: string;
    readonly color: number | null;
    readonly deleted: boolean;
  };
}

export type WhatsAppEventType = keyof WhatsAppEventMap;
export type WhatsAppEvent = {
  [K in WhatsAppEventType]: { readonly type: K; readonly data: WhatsAppEventMap[K] };
}[WhatsAppEventType];

export type DomainEvent = InstanceEvent | WhatsAppEvent;

/** Streams outside an instance's own two. */
export const nameReservationStream = (name: string): string => `name-${name.toLowerCase()}`;
export const tokenStream = (tokenHash: string): string => `token-${tokenHash}`;
export const AUDIT_STREAM = 'audit-instances';

export interface ReservationEventMap {
  /** Makes the name unique: the stream `name-<lower(name)>` exists at most once. */
  InstanceNameReserved: At & { readonly instanceId: string; readonly name: string };
  /**
   * Binds a token (by its digest only: HMAC under the server pepper, or SHA-256 before it) to an
   * instance; `token-<digest>` exists at most once.
   */
  InstanceTokenAssigned: At & { readonly instanceId: string; readonly tokenHash: string };
  /** The token no longer authenticates (rotated); its stream is deleted right after. */
  InstanceTokenRevoked: At & { readonly instanceId: string; readonly tokenHash: string };
}

export interface AuditEventMap {
  /** What remains of an instance after deletion: identifiers and times, no content. */
  InstanceDeletionAudited: At & {
    readonly instanceId: string;
    readonly name: string;
    readonly createdAt: string;
    readonly by: string;
  };
}

/** Runtime warnings and errors about an instance, appended to `wa-<id>` so instance logs stay rebuildable. */
export interface RuntimeLogEventMap {
  RuntimeLogged: At & {
    readonly level: 'debug' | 'info' | 'warn' | 'error';
    readonly message: string;
    readonly context: Readonly<Record<string, unknown>>;
  };
}
