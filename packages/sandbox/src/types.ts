/** Public types of the sandbox: options, the handle `startSandbox` returns and the records it keeps. */

export type PresenceState = 'available' | 'unavailable';
export type ChatState = 'composing' | 'paused' | 'recording';
/** How a stanza names its sender: by phone number (with the LID alongside) or by LID (with the number). */
export type Addressing = 'pn' | 'lid';

/**
 * Why the sandbox drops a device, named as Baileys' `DisconnectReason`; the status code Baileys reports
 * is in brackets. `loggedOut` unlinks the device (its next login fails with 401); `forbidden` bans the
 * account (its logins fail with 403 until `unban`).
 */
export type KickReason =
  | 'connectionClosed' // 428: the server closes the socket
  | 'restartRequired' // 515: <stream:error code=515/>
  | 'connectionReplaced' // 440: <stream:error><conflict type=replaced/></stream:error>
  | 'loggedOut' // 401: <stream:error code=401><conflict type=device_removed/></stream:error>
  | 'forbidden' // 403: <stream:error code=403/>
  | 'badSession' // 500: a stream error without a code
  | 'unavailableService' // 503: <stream:error code=503/>
  | 'multideviceMismatch'; // 411: <ib><downgrade_webclient/></ib>

export const KICK_REASONS: Readonly<Record<KickReason, number>> = {
  connectionClosed: 428,
  restartRequired: 515,
  connectionReplaced: 440,
  loggedOut: 401,
  forbidden: 403,
  badSession: 500,
  unavailableService: 503,
  multideviceMismatch: 411,
};

/** A message a simulated phone decrypted. */
export interface PhoneMessage {
  readonly id: string;
  /** The sending user, as a phone-number JID. */
  readonly from: string;
  /** The sending device (`number:device@s.whatsapp.net`, or `number@s.whatsapp.net` for a phone). */
  readonly fromDevice: string;
  /** The conversation: the other user's phone-number JID, or the group JID. */
  readonly chat: string;
  /** True when one of this account's own linked devices sent it (the phone got a `deviceSentMessage` copy). */
  readonly fromMe: boolean;
  readonly timestamp: number;
  /** When the phone decrypted it (ms since the epoch). */
  readonly receivedAt: number;
  /** `conversation` or `extendedTextMessage.text`, when the message is a text. */
  readonly text: string | undefined;
  /** The decrypted `proto.Message` as JSON (the copy inside `deviceSentMessage` for own messages). */
  readonly message: Record<string, unknown>;
  /** Whether it arrived as a Signal prekey message (a new session) or a normal one. */
  readonly cipher: 'pkmsg' | 'msg';
}

/** A receipt a simulated phone got for a message it sent. */
export interface PhoneReceipt {
  readonly id: string;
  readonly from: string;
  readonly fromDevice: string;
  /** Receipt type as sent: `delivery` when the stanza had none, otherwise `read`, `read-self`, `inactive`, `played`… */
  readonly type: string;
  readonly at: number;
}

export interface CallRecord {
  readonly callId: string;
  readonly from: string;
  readonly to: string;
  readonly video: boolean;
  status: 'offer' | 'rejected' | 'terminated';
  /** The device that rejected the call, when one did. */
  rejectedBy?: string;
  readonly at: number;
}

export interface ChatStateRecord {
  readonly from: string;
  readonly fromDevice: string;
  readonly state: ChatState | 'available' | 'unavailable';
  readonly at: number;
}

export interface DeviceInfo {
  readonly jid: string;
  readonly lid: string;
  readonly deviceId: number;
  readonly keyIndex: number;
  readonly platform: string;
  readonly online: boolean;
  readonly removed: boolean;
  /** One-time prekeys the device has uploaded and the server has not handed out yet. */
  readonly preKeyCount: number;
  /** One-time prekeys the device ever uploaded. */
  readonly preKeysUploaded: number;
}

export interface AccountInfo {
  readonly phoneNumber: string;
  readonly jid: string;
  readonly lid: string;
  readonly name: string;
  readonly banned: boolean;
  readonly devices: DeviceInfo[];
}

export interface GroupParticipantInfo {
  readonly jid: string;
  readonly lid: string;
  readonly admin: 'admin' | 'superadmin' | null;
}

export interface GroupInfo {
  readonly jid: string;
  readonly subject: string;
  readonly description: string | undefined;
  readonly owner: string;
  readonly creation: number;
  readonly announce: boolean;
  readonly restrict: boolean;
  readonly participants: GroupParticipantInfo[];
}

/** A stanza the sandbox exchanged with a device (tag and attributes only), for assertions. */
export interface StanzaRecord {
  readonly dir: 'in' | 'out';
  readonly tag: string;
  readonly attrs: Record<string, string>;
  readonly at: number;
}

/** One linked device's connections, for asserting that a gateway never holds two at once. */
export interface DeviceConnections {
  /** `number:device@s.whatsapp.net` */
  readonly device: string;
  /** A logged-in socket of this device is open now. */
  readonly online: boolean;
  readonly logins: number;
  /** Logins while another socket of the device was still open (answered with 440 "replaced"). */
  readonly replaced: number;
}

/** One login: when its socket opened and when the device logged in (ms since the epoch). */
export interface LoginRecord {
  readonly device: string;
  readonly openedAt: number;
  readonly loggedInAt: number;
}

export interface SandboxStats {
  readonly accounts: number;
  /** Linked devices (not unlinked). */
  readonly devices: number;
  readonly devicesOnline: number;
  /** Open client sockets, including unregistered ones. */
  readonly connections: number;
  readonly waitingForPairing: number;
  /** Of the whole process the sandbox runs in. */
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  readonly cpuUserMs: number;
  readonly cpuSystemMs: number;
  /** Event-loop delay since start (how late timers and sockets got served): a busy sandbox shows here. */
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
}

export interface SandboxLogger {
  debug(msg: string, data?: Record<string, unknown>): void;
  info(msg: string, data?: Record<string, unknown>): void;
  warn(msg: string, data?: Record<string, unknown>): void;
  error(msg: string, data?: Record<string, unknown>): void;
}

export interface SandboxOptions {
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  /** Loopback only. */
  readonly host?: '127.0.0.1';
  /**
   * Report one prekey on the server to a device that has none, so Baileys uploads 5 prekeys instead of
   * 812 on its first login (saves ~0.3 s of CPU per pairing). Off by default: the real server's count.
   */
  readonly smallPreKeyBatches?: boolean;
  /** Push the inline initial history sync (and app-state keys) on a device's first login. Default true. */
  readonly historySync?: boolean;
  /** Drop libsignal's console output (session dumps with key material). Default true. */
  readonly quietLibsignal?: boolean;
  /** How long a device gets to close the socket itself after a stream error. Default 2000 ms. */
  readonly closeGraceMs?: number;
  readonly logger?: SandboxLogger;
}
