/**
 * What the sandbox knows about the world: accounts (a phone number, a LID and a simulated primary
 * phone) and the companion devices linked to them (the Baileys clients).
 */
import type { KeyPair } from './crypto.ts';
import type { BinaryNode } from './nodes.ts';
import { SignalDevice, type PreKeyBundle } from './signal-device.ts';
import type { PhoneMessage, PhoneReceipt, CallRecord, ChatStateRecord, PresenceState } from './types.ts';

export const PN_SERVER = 's.whatsapp.net';
export const LID_SERVER = 'lid';
export const GROUP_SERVER = 'g.us';
export const SERVER_JID = 's.whatsapp.net';

/** Keeps memory bounded for long-running sandboxes and benches: only the latest entries are kept. */
export class BoundedLog<T> {
  private items: T[] = [];
  constructor(private readonly max: number) {}
  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.max) this.items.splice(0, this.items.length - this.max);
  }
  list(): T[] {
    return [...this.items];
  }
  find(predicate: (item: T) => boolean): T | undefined {
    for (let i = this.items.length - 1; i >= 0; i--) if (predicate(this.items[i]!)) return this.items[i];
    return undefined;
  }
}

/** Either side of a conversation: the simulated phone (device 0) or a linked companion. */
export type Device = PhoneDevice | Companion;

export class PhoneDevice {
  readonly kind = 'phone';
  readonly deviceId = 0;
  constructor(readonly account: Account) {}
  get pnJid(): string {
    return `${this.account.pn}@${PN_SERVER}`;
  }
  get lidJid(): string {
    return `${this.account.lid}@${LID_SERVER}`;
  }
  /** The libsignal address other devices use for this one. */
  get address(): string {
    return `${this.account.lid}.0`;
  }
}

/**
 * A logged-in companion's socket, as the server drives it. `ClientConnection` implements it; the model
 * names only this, so the connection module (which records into a companion's log) is not imported here.
 */
export interface CompanionConnection {
  readonly isOpen: boolean;
  /** The client said `passive/active`: stanzas go out live instead of waiting in the offline queue. */
  readonly active: boolean;
  /** The companion logged in on this socket; cleared when another socket takes its place. */
  companion: Companion | undefined;
  send(stanza: BinaryNode): void;
  /** Sends a `<stream:error>` (or `<failure>`) and closes after the grace period. */
  streamError(stanza: BinaryNode): void;
  close(): void;
  closeAfterGrace(): void;
}

export interface SignedPreKey {
  readonly keyId: number;
  readonly publicKey: Buffer;
  readonly signature: Buffer;
}

export class Companion {
  readonly kind = 'companion';
  /** The companion's uploaded one-time prekeys, by id; handed out lowest first and then deleted. */
  readonly preKeys = new Map<number, Buffer>();
  /** How many one-time prekeys the device ever uploaded. */
  preKeysUploaded = 0;
  connection: CompanionConnection | undefined;
  /** Logins of this device (every socket that got `success`). */
  logins = 0;
  /**
   * Logins that found another socket of this device still open (WhatsApp answers those with 440
   * "replaced"): each one is a moment with two connections for one device.
   */
  replaced = 0;
  removed = false;
  loggedInOnce = false;
  /** Stanzas waiting for the device to come back online, delivered with `offline` after the next login. */
  readonly offlineQueue: BinaryNode[] = [];
  readonly log = new BoundedLog<{
    dir: 'in' | 'out';
    tag: string;
    attrs: Record<string, string>;
    at: number;
  }>(200);
  /** Accounts whose presence this device subscribed to. */
  readonly presenceSubscriptions = new Set<Account>();

  constructor(
    readonly account: Account,
    readonly deviceId: number,
    readonly keyIndex: number,
    readonly noisePublicKey: Buffer,
    readonly identityKey: Buffer,
    public registrationId: number,
    public signedPreKey: SignedPreKey,
    readonly platform: string,
  ) {}

  get pnJid(): string {
    return `${this.account.pn}:${this.deviceId}@${PN_SERVER}`;
  }
  get lidJid(): string {
    return `${this.account.lid}:${this.deviceId}@${LID_SERVER}`;
  }
  get address(): string {
    return `${this.account.lid}.${this.deviceId}`;
  }

  /** A bundle for a new session, consuming the lowest one-time prekey if any is left. */
  takeBundle(): PreKeyBundle {
    let lowest: number | undefined;
    for (const id of this.preKeys.keys()) if (lowest === undefined || id < lowest) lowest = id;
    const base = {
      registrationId: this.registrationId,
      identityKey: this.identityKey,
      signedPreKey: this.signedPreKey,
    };
    if (lowest === undefined) return base;
    const publicKey = this.preKeys.get(lowest)!;
    this.preKeys.delete(lowest);
    return { ...base, preKey: { keyId: lowest, publicKey } };
  }
}

export interface AppStateKey {
  readonly keyId: Buffer;
  readonly keyData: Buffer;
  readonly timestamp: number;
}

export class Account {
  readonly phone: PhoneDevice;
  readonly signal: SignalDevice;
  readonly companions = new Map<number, Companion>();
  nextDeviceId = 1;
  nextKeyIndex = 1;
  banned = false;
  presence: PresenceState = 'unavailable';
  lastSeen: number | undefined;
  readonly inbox = new BoundedLog<PhoneMessage>(500);
  readonly receipts = new BoundedLog<PhoneReceipt>(500);
  readonly calls = new BoundedLog<CallRecord>(100);
  readonly chatStates = new BoundedLog<ChatStateRecord>(100);
  /** Messages this account's phone sent, kept for history sync and read receipts. */
  readonly sent = new BoundedLog<PhoneMessage>(500);
  /** The phone's address book: jid → name. */
  readonly contacts = new Map<string, string>();

  constructor(
    readonly pn: string,
    readonly lid: string,
    public name: string,
    identity: KeyPair,
    readonly appStateKey: AppStateKey,
    readonly createdAt: number,
  ) {
    this.signal = new SignalDevice(identity);
    this.phone = new PhoneDevice(this);
  }

  get pnJid(): string {
    return `${this.pn}@${PN_SERVER}`;
  }
  get lidJid(): string {
    return `${this.lid}@${LID_SERVER}`;
  }

  /** Device 0 and every linked device that is still registered. */
  devices(): Device[] {
    return [this.phone, ...this.activeCompanions()];
  }

  activeCompanions(): Companion[] {
    return [...this.companions.values()].filter((c) => !c.removed);
  }
}
