/**
 * The in-process control API: scripts the simulated phones and inspects what the sandbox saw. Accounts
 * are named by phone number, phone-number JID or LID JID; devices by their JID
 * (`number:device@s.whatsapp.net` or `lid:device@lid`). Every result is plain JSON-friendly data, so
 * the HTTP control API is a thin layer over this class.
 */
import {
  contactPatch,
  labelChatPatch,
  labelEditPatch,
  pushNamePatch,
  type AppStateMutation,
} from './app-state.ts';
import { groupInfo, type GroupChanges, type ParticipantAction } from './groups.ts';
import type { Account, Companion } from './model.ts';
import { enterPairingCode, scanQr } from './pairing.ts';
import { phoneSend } from './phone.ts';
import { SandboxError } from './errors.ts';
import type { DeviceFaultView, FaultKind, FaultOptions } from './faults.ts';
import {
  delayAcks,
  liftSendingRestriction,
  repeatsOf,
  restrictSending,
  sendingRestriction,
  type RepeatRecord,
  type SendingRestrictionInfo,
  type SendingRestrictionOptions,
} from './send-faults.ts';
import type { SandboxServer } from './server.ts';
import { endCall, sendChatState, setPresence, startCall } from './signals.ts';
import { stanzaId } from './ids.ts';
import { node, unixSeconds } from './nodes.ts';
import type {
  AccountInfo,
  Addressing,
  CallRecord,
  ChatState,
  ChatStateRecord,
  DeviceConnections,
  DeviceInfo,
  GroupInfo,
  KickReason,
  LoginRecord,
  PhoneMessage,
  PhoneReceipt,
  PresenceState,
  SandboxStats,
  StanzaRecord,
} from './types.ts';
import { proto } from './wa.ts';

export interface CreateAccountOptions {
  /** Digits only (a leading + is dropped); random when absent. */
  readonly phoneNumber?: string;
  readonly name?: string;
  readonly lid?: string;
}

export interface SendOptions {
  /** The message id; random when absent. */
  readonly id?: string;
  /** `pn` (default): `from` is the phone number, `sender_lid` the LID. `lid`: the other way round. */
  readonly addressing?: Addressing;
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  /** Only messages whose text equals this. */
  readonly text?: string;
  /** Only messages from this user or device JID. */
  readonly from?: string;
}

export class SandboxControl {
  constructor(private readonly server: SandboxServer) {}

  // ---- accounts and devices -------------------------------------------------------------------

  createAccount(opts: CreateAccountOptions = {}): AccountInfo {
    return accountInfo(this.server.createAccount(opts));
  }

  account(ref: string): AccountInfo {
    return accountInfo(this.server.account(ref));
  }

  accounts(): AccountInfo[] {
    return this.server.accounts().map(accountInfo);
  }

  devices(account: string): DeviceInfo[] {
    return this.server.account(account).activeCompanions().map(deviceInfo);
  }

  /** The phone of `account` scans the QR string Baileys emitted (`connection.update.qr`). */
  async scanQr(account: string, qr: string): Promise<DeviceInfo> {
    return deviceInfo(await scanQr(this.server, this.server.account(account), qr));
  }

  /** The user of `account` types the pairing code the client showed (`sock.requestPairingCode`). */
  async enterPairingCode(account: string, code: string): Promise<DeviceInfo> {
    return deviceInfo(await enterPairingCode(this.server, this.server.account(account), code));
  }

  /** How many clients wait unregistered (showing a QR or a pairing code). */
  waitingForPairing(): number {
    return this.server.pairings.waiting;
  }

  // ---- sending faults (send-faults.ts) ------------------------------------------------------------

  /** The server refuses `account`'s messages in their ack (463 by default) until lifted. */
  restrictSending(account: string, options: SendingRestrictionOptions = {}): SendingRestrictionInfo {
    return restrictSending(this.server, this.server.account(account), options);
  }

  liftSendingRestriction(account: string): void {
    liftSendingRestriction(this.server, this.server.account(account));
  }

  sendingRestriction(account: string): SendingRestrictionInfo | null {
    return sendingRestriction(this.server, this.server.account(account));
  }

  /** The server holds the ack of `account`'s messages this long after delivering them (0: at once). */
  delayAcks(account: string, ms: number): void {
    delayAcks(this.server, this.server.account(account), ms);
  }

  /** Messages `account`'s phone received again with an id it had (and showed once). */
  repeats(account: string): RepeatRecord[] {
    return repeatsOf(this.server, this.server.account(account));
  }

  // ---- messages ---------------------------------------------------------------------------------

  /** `from`'s phone sends a text to the user `to` (all of `to`'s devices get it, `from`'s companions get a copy). */
  sendText(
    from: string,
    to: string,
    text: string,
    opts: SendOptions = {},
  ): Promise<{ id: string; t: number }> {
    return this.sendMessage(from, to, { conversation: text }, opts);
  }

  /** Sends any `proto.Message` (as an object, e.g. `{ extendedTextMessage: { text } }`). */
  sendMessage(
    from: string,
    to: string,
    message: proto.IMessage,
    opts: SendOptions = {},
  ): Promise<{ id: string; t: number }> {
    let checked: proto.IMessage;
    try {
      checked = proto.Message.fromObject(message);
    } catch (err) {
      throw new SandboxError(400, `not a proto.Message: ${String(err)}`);
    }
    return phoneSend(this.server, this.server.account(from), to, checked, opts);
  }

  /** What `account`'s phone decrypted: messages from others and copies of what its own devices sent. */
  received(account: string): PhoneMessage[] {
    return this.server.account(account).inbox.list();
  }

  /** What `account`'s phone sent itself. */
  sent(account: string): PhoneMessage[] {
    return this.server.account(account).sent.list();
  }

  /** Receipts `account`'s phone got for the messages it sent (delivery, read…). */
  receipts(account: string): PhoneReceipt[] {
    return this.server.account(account).receipts.list();
  }

  /** Resolves with the first message (already received or arriving) that matches. */
  waitForMessage(account: string, opts: WaitOptions = {}): Promise<PhoneMessage> {
    const target = this.server.account(account);
    const matches = (m: PhoneMessage): boolean =>
      (opts.text === undefined || m.text === opts.text) &&
      (opts.from === undefined ||
        m.from === opts.from ||
        m.fromDevice === opts.from ||
        this.sameUser(m.from, opts.from));
    return this.waitFor('phone-message', target, () => target.inbox.find(matches), matches, opts.timeoutMs);
  }

  /** Resolves with the first receipt for `messageId` (optionally of a type) `account`'s phone got. */
  waitForReceipt(
    account: string,
    messageId: string,
    opts: { type?: string; timeoutMs?: number } = {},
  ): Promise<PhoneReceipt> {
    const target = this.server.account(account);
    const matches = (r: PhoneReceipt): boolean =>
      r.id === messageId && (opts.type === undefined || r.type === opts.type);
    return this.waitFor(
      'phone-receipt',
      target,
      () => target.receipts.find(matches),
      matches,
      opts.timeoutMs,
    );
  }

  /** `account`'s phone marks messages it received as read: the senders get read receipts. */
  markRead(account: string, messageIds: string[]): number {
    const reader = this.server.account(account);
    let sent = 0;
    for (const id of messageIds) {
      const message = reader.inbox.find((m) => m.id === id && !m.fromMe);
      if (!message) continue;
      const device = this.server.findDevice(message.fromDevice);
      if (!device) continue;
      const receipt = {
        id,
        from: reader.pnJid,
        fromDevice: reader.phone.pnJid,
        type: 'read',
        at: Date.now(),
      };
      if (device.kind === 'phone') {
        device.account.receipts.push(receipt);
        this.server.emitPhoneReceipt(device.account, receipt);
      } else
        this.server.deliver(
          device,
          node('receipt', { from: reader.pnJid, id, t: unixSeconds(), type: 'read' }),
        );
      sent++;
    }
    return sent;
  }

  // ---- calls, presence, chat state ---------------------------------------------------------------

  startCall(from: string, to: string, opts: { video?: boolean; addressing?: Addressing } = {}): CallRecord {
    return { ...startCall(this.server, this.server.account(from), this.server.account(to), opts) };
  }

  endCall(callId: string, reason?: 'timeout'): CallRecord {
    return { ...endCall(this.server, callId, reason) };
  }

  calls(account: string): CallRecord[] {
    return this.server
      .account(account)
      .calls.list()
      .map((c) => ({ ...c }));
  }

  /** `account` comes online or goes offline; devices subscribed to its presence hear it. */
  setPresence(account: string, presence: PresenceState): void {
    setPresence(this.server, this.server.account(account), presence);
  }

  /** `from`'s phone is typing (or recording, or stopped) in the chat with `to`. */
  sendChatState(from: string, to: string, state: ChatState): void {
    sendChatState(this.server, this.server.account(from), this.server.account(to), state);
  }

  /** Chat states companions sent toward `account` (typing indicators). */
  chatStates(account: string): ChatStateRecord[] {
    return this.server.account(account).chatStates.list();
  }

  // ---- groups -----------------------------------------------------------------------------------------

  createGroup(owner: string, subject: string, participants: string[]): GroupInfo {
    const members = participants.map((p) => this.server.account(p));
    return groupInfo(this.server.groups.create(this.server.account(owner), subject, members));
  }

  group(jid: string): GroupInfo {
    return groupInfo(this.server.groups.get(jid));
  }

  groupParticipantsUpdate(
    group: string,
    actor: string,
    action: ParticipantAction,
    participants: string[],
  ): GroupInfo {
    const g = this.server.groups.get(group);
    this.server.groups.updateParticipants(
      g,
      this.server.account(actor),
      action,
      participants.map((p) => this.server.account(p)),
    );
    return groupInfo(g);
  }

  groupParticipantsAdd(group: string, actor: string, participants: string[]): GroupInfo {
    return this.groupParticipantsUpdate(group, actor, 'add', participants);
  }

  groupParticipantsRemove(group: string, actor: string, participants: string[]): GroupInfo {
    return this.groupParticipantsUpdate(group, actor, 'remove', participants);
  }

  groupUpdate(group: string, actor: string, changes: GroupChanges): GroupInfo {
    const g = this.server.groups.get(group);
    this.server.groups.update(g, this.server.account(actor), changes);
    return groupInfo(g);
  }

  // ---- contacts, push names, labels (app state) -----------------------------------------------------

  /** Saves a contact in `account`'s address book; its devices get a `contacts.upsert`. */
  async setContact(
    account: string,
    contact: { jid: string; fullName?: string; firstName?: string },
  ): Promise<void> {
    const owner = this.server.account(account);
    const other = this.server.findAccount(contact.jid);
    const jid = other?.pnJid ?? contact.jid;
    owner.contacts.set(jid, contact.fullName ?? contact.firstName ?? '');
    await this.server.appStates.push(owner, contactPatch(jid, { ...contact, lidJid: other?.lidJid }));
  }

  /** Changes `account`'s push name: its devices learn it through app state, others see it on new messages. */
  async setPushName(account: string, name: string): Promise<void> {
    const owner = this.server.account(account);
    owner.name = name;
    await this.server.appStates.push(owner, pushNamePatch(name));
  }

  /** Creates or edits a label (WhatsApp Business); the account's devices get `labels.edit`. */
  async editLabel(
    account: string,
    label: { id: string; name: string; color?: number; deleted?: boolean },
  ): Promise<void> {
    await this.server.appStates.push(this.server.account(account), labelEditPatch(label));
  }

  /** Puts a label on a chat or takes it off; the account's devices get `labels.association`. */
  async labelChat(account: string, labelId: string, chatJid: string, labeled = true): Promise<void> {
    await this.server.appStates.push(this.server.account(account), labelChatPatch(labelId, chatJid, labeled));
  }

  /** App-state changes the account's companions made (labels, contacts, archive…), as the phone decoded them. */
  appStateMutations(account: string): AppStateMutation[] {
    return [...(this.server.appStates.mutations.get(this.server.account(account)) ?? [])];
  }

  /** `account` changed its profile picture: its contacts' devices get a `contacts.update`. */
  setProfilePicture(account: string): void {
    const owner = this.server.account(account);
    for (const other of this.server.accounts()) {
      if (other === owner) continue;
      this.server.deliverToAccount(other, () =>
        node('notification', { from: owner.pnJid, type: 'picture', id: stanzaId(), t: unixSeconds() }, [
          node('set', { jid: owner.pnJid, id: String(Date.now()), author: owner.pnJid }),
        ]),
      );
    }
  }

  // ---- disconnects and inspection ----------------------------------------------------------------

  /** Drops a linked device with the given reason. Returns whether it was connected. */
  kick(deviceJid: string, reason: KickReason | number): boolean {
    return this.server.kick(this.companion(deviceJid), reason);
  }

  /** Lifts a `forbidden` ban: the account's devices can log in again. */
  unban(account: string): void {
    this.server.account(account).banned = false;
  }

  // ---- fault modes (faults.ts) ----------------------------------------------------------------------

  /** The device's socket stays open and pings are answered, but nothing is routed to it. */
  muteDevice(deviceJid: string, options: FaultOptions = {}): DeviceFaultView {
    return this.setFault(deviceJid, 'mute', options);
  }

  /** The device's keepalive pings get no answer. */
  dropPings(deviceJid: string, options: FaultOptions = {}): DeviceFaultView {
    return this.setFault(deviceJid, 'dropPings', options);
  }

  /** The next `options.messages` (default 10) messages routed to the device fail to decrypt. */
  corruptSessions(deviceJid: string, options: FaultOptions = {}): DeviceFaultView {
    return this.setFault(deviceJid, 'corruptSessions', options);
  }

  /** Lifts one fault of the device, or all of them; a device no longer muted gets what waited for it. */
  liftFault(deviceJid: string, kind?: FaultKind): DeviceFaultView {
    const companion = this.companion(deviceJid);
    this.server.faults.lift(companion, kind);
    this.server.flushQueued(companion);
    return this.server.faults.view(companion);
  }

  faults(deviceJid: string): DeviceFaultView {
    return this.server.faults.view(this.companion(deviceJid));
  }

  /** Every device with a fault set. */
  allFaults(): DeviceFaultView[] {
    return this.server.faults.all();
  }

  private setFault(deviceJid: string, kind: FaultKind, options: FaultOptions): DeviceFaultView {
    const companion = this.companion(deviceJid);
    if (options.messages !== undefined && !(Number.isInteger(options.messages) && options.messages > 0))
      throw new SandboxError(400, 'messages must be a positive integer');
    this.server.faults.set(companion, kind, options);
    return this.server.faults.view(companion);
  }

  /** The latest stanzas (tag and attributes) exchanged with a device, oldest first. */
  log(deviceJid: string): StanzaRecord[] {
    return this.companion(deviceJid).log.list();
  }

  /** Open client sockets, logged in or not. */
  connectionCount(): number {
    return this.server.connections.size;
  }

  /**
   * Every linked device's connections: whether it is online, how often it logged in, and how often a
   * login found another of its sockets still open (two connections for one device at that moment).
   */
  deviceConnections(): DeviceConnections[] {
    return this.server.accounts().flatMap((account) =>
      account.activeCompanions().map((companion) => ({
        device: companion.pnJid,
        online: !!companion.connection?.isOpen,
        logins: companion.logins,
        replaced: companion.replaced,
      })),
    );
  }

  /**
   * The logins since `since` (ms since the epoch; the latest 20,000 are kept), oldest first: when each
   * socket opened and when it logged in. A bench reads how many logins a restart ran at once from it.
   */
  logins(since = 0): LoginRecord[] {
    if (!Number.isFinite(since)) throw new SandboxError(400, 'since must be a time in ms since the epoch');
    return this.server.loginLog.filter((login) => login.loggedInAt >= since);
  }

  /** Counts and this process's resource use, for benches and dashboards. */
  stats(): SandboxStats {
    const accounts = this.server.accounts();
    const devices = accounts.flatMap((a) => a.activeCompanions());
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    return {
      accounts: accounts.length,
      devices: devices.length,
      devicesOnline: devices.filter((d) => d.connection?.isOpen).length,
      connections: this.server.connections.size,
      waitingForPairing: this.server.pairings.waiting,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      cpuUserMs: Math.round(cpu.user / 1000),
      cpuSystemMs: Math.round(cpu.system / 1000),
      eventLoopDelayP99Ms: Math.round(this.server.loopDelay.percentile(99) / 1e6),
      eventLoopDelayMaxMs: Math.round(this.server.loopDelay.max / 1e6),
    };
  }

  private companion(deviceJid: string): Companion {
    const account = this.server.findAccount(deviceJid);
    const device = Number(deviceJid.match(/:(\d+)@/)?.[1] ?? NaN);
    const companion = account?.companions.get(device);
    if (!companion) throw new SandboxError(404, `no linked device ${deviceJid}`);
    return companion;
  }

  private sameUser(a: string, b: string): boolean {
    const x = this.server.findAccount(a);
    return !!x && x === this.server.findAccount(b);
  }

  private waitFor<T>(
    event: string,
    target: Account,
    existing: () => T | undefined,
    matches: (item: T) => boolean,
    timeoutMs = 10_000,
  ): Promise<T> {
    const found = existing();
    if (found) return Promise.resolve(found);
    return new Promise<T>((resolve, reject) => {
      const listener = (account: Account, item: T): void => {
        if (account !== target || !matches(item)) return;
        cleanup();
        resolve(item);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new SandboxError(408, `timed out waiting for ${event} on ${target.pn}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.server.events.off(event, listener);
      };
      this.server.events.on(event, listener);
    });
  }
}

export function deviceInfo(companion: Companion): DeviceInfo {
  return {
    jid: companion.pnJid,
    lid: companion.lidJid,
    deviceId: companion.deviceId,
    keyIndex: companion.keyIndex,
    platform: companion.platform,
    online: !!companion.connection?.isOpen,
    removed: companion.removed,
    preKeyCount: companion.preKeys.size,
    preKeysUploaded: companion.preKeysUploaded,
  };
}

export function accountInfo(account: Account): AccountInfo {
  return {
    phoneNumber: account.pn,
    jid: account.pnJid,
    lid: account.lidJid,
    name: account.name,
    banned: account.banned,
    devices: account.activeCompanions().map(deviceInfo),
  };
}
