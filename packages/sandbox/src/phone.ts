/**
 * Simulated phones: each account's device 0. A phone sends like a real one (fans a message out to every
 * device of the recipient and a `deviceSentMessage` copy to its own linked devices, each encrypted with
 * Signal) and receives like one (decrypts, records, answers with a delivery receipt).
 */
import { messageId } from './ids.ts';
import type { Account, Companion, Device } from './model.ts';
import { node, unixSeconds, type BinaryNode } from './nodes.ts';
import { takeBundle } from './prekeys.ts';
import { padMessage, unpadMessage, type CipherType } from './signal-device.ts';
import { SandboxError } from './errors.ts';
import { isRepeat } from './send-faults.ts';
import type { SandboxContext } from './context.ts';
import type { Addressing, PhoneMessage } from './types.ts';
import { proto } from './wa.ts';

export interface Encrypted {
  readonly type: CipherType;
  readonly ciphertext: Buffer;
}

/** What a delivered message stanza says besides the ciphertext. */
export interface StanzaMeta {
  readonly id: string;
  readonly t: number;
  readonly type: string;
  /** The conversation as the sender addressed it (for copies to the sender's own devices). */
  readonly chatJid: string;
  readonly addressing: Addressing;
  readonly category?: string;
}

const locks = new Map<string, Promise<unknown>>();

/** Runs `fn` after every earlier call with the same key: session setup and ratchet steps must not interleave. */
function serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = locks.get(key) ?? Promise.resolve();
  const run = previous.then(fn, fn);
  const tail = run.catch(() => undefined);
  locks.set(key, tail);
  void tail.then(() => {
    if (locks.get(key) === tail) locks.delete(key);
  });
  return run;
}

/**
 * Encrypts for `target` with the phone's Signal identity, starting a session from a fetched bundle if
 * needed; `newSession` drops the current one first (the device asked again: it could not decrypt).
 */
export function encryptFromPhone(
  server: SandboxContext,
  sender: Account,
  target: Device,
  message: proto.IMessage,
  { newSession = false }: { readonly newSession?: boolean } = {},
): Promise<Encrypted> {
  return serialized(`${sender.lid}->${target.address}`, async () => {
    if (newSession) sender.signal.forgetSession(target.address);
    if (!sender.signal.hasSession(target.address)) {
      await sender.signal.startSession(target.address, takeBundle(server, target));
    }
    return sender.signal.encrypt(target.address, padMessage(message));
  });
}

export function messageType(message: proto.IMessage): string {
  if (message.reactionMessage) return 'reaction';
  if (message.pollCreationMessage || message.pollCreationMessageV3 || message.pollUpdateMessage)
    return 'poll';
  if (
    message.imageMessage ||
    message.videoMessage ||
    message.audioMessage ||
    message.documentMessage ||
    message.stickerMessage ||
    message.contactMessage ||
    message.locationMessage
  ) {
    return 'media';
  }
  return 'text';
}

/** The stanza a companion receives for a message from `sender` (any device). */
export function messageStanza(
  sender: Device,
  target: Companion,
  meta: StanzaMeta,
  enc: Encrypted,
): BinaryNode {
  const own = sender.account === target.account;
  const senderPn = sender.pnJid;
  const senderLid = sender.lidJid;
  const attrs: Record<string, string | number | undefined> = { id: meta.id, t: meta.t, type: meta.type };
  if (own) {
    attrs.from = senderPn;
    if (meta.category) attrs.category = meta.category;
    else attrs.recipient = meta.chatJid;
  } else if (meta.addressing === 'lid') {
    attrs.from = senderLid;
    attrs.sender_pn = sender.account.pnJid;
    attrs.notify = sender.account.name;
    attrs.addressing_mode = 'lid';
  } else {
    attrs.from = senderPn;
    attrs.sender_lid = sender.account.lidJid;
    attrs.notify = sender.account.name;
  }
  return node('message', attrs, [node('enc', { v: 2, type: enc.type }, enc.ciphertext)]);
}

export interface PhoneSendOptions {
  readonly id?: string;
  readonly addressing?: Addressing;
}

/** `from`'s phone sends `message` to the user `toJid`. */
export async function phoneSend(
  server: SandboxContext,
  from: Account,
  toJid: string,
  message: proto.IMessage,
  opts: PhoneSendOptions = {},
): Promise<{ id: string; t: number }> {
  const to = server.findAccount(toJid);
  if (!to) throw new SandboxError(404, `no account ${toJid}`);
  if (to === from) throw new SandboxError(400, 'a phone cannot message its own account');
  const id = opts.id ?? messageId();
  const t = unixSeconds();
  const meta: StanzaMeta = {
    id,
    t,
    type: messageType(message),
    chatJid: to.pnJid,
    addressing: opts.addressing ?? 'pn',
  };
  from.sent.push(phoneRecord(from.phone, to.pnJid, id, t, message, true, 'msg'));
  const copy: proto.IMessage = { deviceSentMessage: { destinationJid: to.pnJid, message } };
  const targets: Device[] = [...to.devices(), ...from.activeCompanions()];
  await Promise.all(
    targets.map(async (target) => {
      try {
        const payload = target.account === from ? copy : message;
        const enc = await encryptFromPhone(server, from, target, payload);
        if (target.kind === 'phone') await phoneReceive(server, target.account, from.phone, enc, meta);
        else server.deliver(target, messageStanza(from.phone, target, meta, enc));
      } catch (err) {
        server.logger.warn('phone could not send to a device', { to: target.address, err: String(err) });
      }
    }),
  );
  return { id, t };
}

/** Retry receipts a phone answers per message and device; Baileys itself asks at most five times. */
const MAX_RETRIES_ANSWERED = 3;
const retriesAnswered = new Map<string, number>();

/**
 * A companion could not decrypt `record`, a message of `account`'s phone, and sent a retry receipt: the
 * phone starts a new Signal session with it (from a fresh pre-key bundle) and sends the message again, as
 * WhatsApp has the sender do. False when it was asked too often.
 */
export async function phoneResend(
  server: SandboxContext,
  account: Account,
  companion: Companion,
  record: PhoneMessage,
): Promise<boolean> {
  const { id } = record;
  const asked = `${id}\u0000${companion.address}`;
  const count = (retriesAnswered.get(asked) ?? 0) + 1;
  if (count > MAX_RETRIES_ANSWERED) return false;
  retriesAnswered.set(asked, count);
  if (retriesAnswered.size > 10_000) retriesAnswered.delete(retriesAnswered.keys().next().value!);
  const message = proto.Message.fromObject(record.message);
  const own = companion.account === account;
  const payload: proto.IMessage = own
    ? { deviceSentMessage: { destinationJid: record.chat, message } }
    : message;
  const enc = await encryptFromPhone(server, account, companion, payload, { newSession: true });
  const meta: StanzaMeta = {
    id,
    t: record.timestamp,
    type: messageType(message),
    chatJid: record.chat,
    addressing: 'pn',
  };
  server.deliver(companion, messageStanza(account.phone, companion, meta, enc));
  return true;
}

/** A peer message from an account's phone to one of its own companions (history sync, app-state keys). */
export async function phoneSendPeer(
  server: SandboxContext,
  account: Account,
  companion: Companion,
  message: proto.IMessage,
): Promise<string> {
  const id = messageId();
  const enc = await encryptFromPhone(server, account, companion, message);
  const meta: StanzaMeta = {
    id,
    t: unixSeconds(),
    type: 'text',
    chatJid: account.pnJid,
    addressing: 'pn',
    category: 'peer',
  };
  server.deliver(companion, messageStanza(account.phone, companion, meta, enc));
  return id;
}

/** `account`'s phone receives a message from `sender`: decrypt, record, acknowledge delivery. */
export async function phoneReceive(
  server: SandboxContext,
  account: Account,
  sender: Device,
  enc: Encrypted,
  meta: StanzaMeta,
): Promise<PhoneMessage | undefined> {
  let decoded: proto.Message;
  try {
    const plaintext = await serialized(`${account.lid}<-${sender.address}`, () =>
      account.signal.decrypt(sender.address, enc.type, enc.ciphertext),
    );
    decoded = unpadMessage(plaintext);
  } catch (err) {
    server.logger.warn('phone could not decrypt', {
      phone: account.pn,
      from: sender.address,
      err: String(err),
    });
    return undefined;
  }
  const fromMe = sender.account === account;
  const inner = fromMe ? (decoded.deviceSentMessage?.message ?? decoded) : decoded;
  const destination = decoded.deviceSentMessage?.destinationJid;
  const chat = fromMe
    ? destination
      ? (server.findAccount(destination)?.pnJid ?? destination)
      : account.pnJid
    : sender.account.pnJid;
  const record = phoneRecord(sender, chat, meta.id, meta.t, inner, fromMe, enc.type);
  // The same sender and id again (a send repeated after a crash): acknowledged, not shown twice.
  const repeat = isRepeat(server, account, sender.account.pnJid, meta.id);
  if (!repeat) {
    account.inbox.push(record);
    server.emitPhoneMessage(account, record);
  }
  if (fromMe && meta.category === 'peer' && sender.kind === 'companion') {
    // A peer message from one of the account's own companions (an app-state key request, a probe):
    // the phone answers with a `peer_msg` receipt routed back to that companion, as the companion does
    // for the phone's peer messages. It shows nothing in any chat.
    server.deliver(
      sender,
      node('receipt', { from: account.pnJid, id: meta.id, t: unixSeconds(), type: 'peer_msg' }),
    );
  }
  if (!fromMe && !meta.category) {
    const receipt = {
      id: meta.id,
      from: account.pnJid,
      fromDevice: account.phone.pnJid,
      type: 'delivery',
      at: Date.now(),
    };
    if (sender.kind === 'phone') {
      sender.account.receipts.push(receipt);
      server.emitPhoneReceipt(sender.account, receipt);
    } else server.deliver(sender, node('receipt', { from: account.pnJid, id: meta.id, t: unixSeconds() }));
  }
  return record;
}

function phoneRecord(
  sender: Device,
  chat: string,
  id: string,
  t: number,
  message: proto.IMessage,
  fromMe: boolean,
  cipher: CipherType,
): PhoneMessage {
  const json = proto.Message.fromObject(message).toJSON() as Record<string, unknown>;
  return {
    id,
    from: sender.account.pnJid,
    fromDevice: sender.pnJid,
    chat,
    fromMe,
    timestamp: t,
    receivedAt: Date.now(),
    text: message.conversation ?? message.extendedTextMessage?.text ?? undefined,
    message: json,
    cipher,
  };
}
