/**
 * The server as the stanza handlers see it (iq, pairing, routing, signals, history, groups, app state,
 * prekeys, usync, phone): find accounts and devices, deliver stanzas, report to waiting tests, log.
 * `SandboxServer` implements it and imports the handlers; the handlers import only this, so neither
 * side's module depends on the other.
 */
import type { ClientConnection } from './connection.ts';
import type { Account, Companion, Device } from './model.ts';
import type { BinaryNode } from './nodes.ts';
import type { PhoneMessage, PhoneReceipt, SandboxLogger } from './types.ts';
import type { DeviceFaults } from './faults.ts';

export interface ResolvedOptions {
  readonly smallPreKeyBatches: boolean;
  readonly historySync: boolean;
  readonly closeGraceMs: number;
}

export interface SandboxContext {
  readonly options: ResolvedOptions;
  readonly logger: SandboxLogger;
  /** Fault modes set through the control API (faults.ts). */
  readonly faults: DeviceFaults;

  accounts(): Account[];
  /** An account by phone number, `number@s.whatsapp.net`, `lid@lid` (any device suffix), or LID digits. */
  findAccount(ref: string): Account | undefined;
  /** The device a JID names: device 0 is the phone; a JID without a device suffix names the phone too. */
  findDevice(jid: string): Device | undefined;
  findCompanion(jid: string): Companion | undefined;

  /** Sends to a companion now if it is online and active, or keeps it for its next login. */
  deliver(companion: Companion, stanza: BinaryNode): void;
  /** Sends to every linked device of an account, but `except`. */
  deliverToAccount(account: Account, build: (companion: Companion) => BinaryNode, except?: Companion): void;
  /** Sends straight to a live connection, never queued. */
  sendIfOnline(companion: Companion, stanza: BinaryNode): void;
  /** The client said `passive/active`: flush what waited for it. */
  activate(conn: ClientConnection): void;
  removeCompanion(companion: Companion, reason: string): void;

  emitPhoneMessage(account: Account, message: PhoneMessage): void;
  emitPhoneReceipt(account: Account, receipt: PhoneReceipt): void;
  /** An `<iq>` from the server to a client. */
  serverIq(type: string, xmlns: string, content: BinaryNode[]): BinaryNode;
}
