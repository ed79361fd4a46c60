/**
 * Baileys events → the domain's WhatsApp traffic (src/domain/events.ts, WhatsAppEventMap). Pure: the
 * caller supplies the time; nothing here touches a socket.
 *
 * Addressing: Baileys 7 is LID-first, so a chat or sender may be known as `…@lid` with the phone number
 * jid beside it (`remoteJidAlt`, `participantAlt`, `phoneNumber`). API users send by phone number, so the
 * phone-number jid is preferred wherever WhatsApp gave one; device suffixes are dropped.
 */
import {
  getContentType,
  isJidGroup,
  isPnUser,
  jidNormalizedUser,
  normalizeMessageContent,
  proto,
  WAMessageStubType,
  type BaileysEventMap,
  type WAMessage,
  type WAMessageKey,
} from '@whiskeysockets/baileys';
import type { WhatsAppEvent } from '../../domain/events.ts';

/** Content kinds that are not messages of their own: they arrive as updates or reactions instead. */
const NOT_A_MESSAGE = new Set([
  'protocolMessage',
  'reactionMessage',
  'pollUpdateMessage',
  'encReactionMessage',
  'keepInChatMessage',
]);

const TYPE_NAMES: Readonly<Record<string, string>> = {
  conversation: 'text',
  extendedTextMessage: 'text',
  imageMessage: 'image',
  videoMessage: 'video',
  ptvMessage: 'video',
  audioMessage: 'audio',
  documentMessage: 'document',
  stickerMessage: 'sticker',
  locationMessage: 'location',
  liveLocationMessage: 'location',
  contactMessage: 'contact',
  contactsArrayMessage: 'contacts',
  pollCreationMessage: 'poll',
  pollCreationMessageV2: 'poll',
  pollCreationMessageV3: 'poll',
};

/** Normalises a jid: no device suffix; undefined stays undefined. */
export function normaliseJid(jid: string | null | undefined): string | undefined {
  if (!jid) return undefined;
  return jidNormalizedUser(jid) || jid;
}

/** The phone-number form when WhatsApp gave one, otherwise the jid as it is (normalised). */
export function preferPhoneJid(
  jid: string | null | undefined,
  alt: string | null | undefined,
): string | undefined {
  const primary = normaliseJid(jid);
  const alternative = normaliseJid(alt);
  if (primary && isPnUser(primary)) return primary;
  if (alternative && isPnUser(alternative)) return alternative;
  return primary ?? alternative;
}

export function chatJidOf(key: WAMessageKey): string | undefined {
  return preferPhoneJid(key.remoteJid, key.remoteJidAlt);
}

/** The text a person wrote: body of a text message, or the caption of an image, video or document. */
export function extractText(message: proto.IMessage | null | undefined): string | null {
  const content = normalizeMessageContent(message);
  if (!content) return null;
  return (
    content.conversation ??
    content.extendedTextMessage?.text ??
    content.imageMessage?.caption ??
    content.videoMessage?.caption ??
    content.documentMessage?.caption ??
    null
  );
}

/** `text`, `image`, … or undefined when the message carries no content of its own. */
export function messageTypeOf(message: proto.IMessage | null | undefined): string | undefined {
  const content = normalizeMessageContent(message);
  const kind = getContentType(content ?? undefined);
  if (!kind || NOT_A_MESSAGE.has(kind)) return undefined;
  return TYPE_NAMES[kind] ?? kind.replace(/Message$/, '');
}

/** Baileys' message timestamps are seconds (number or Long). */
export function isoFromSeconds(seconds: unknown, fallback: string): string {
  const n =
    typeof seconds === 'number'
      ? seconds
      : seconds && typeof seconds === 'object' && 'toNumber' in seconds
        ? (seconds as { toNumber(): number }).toNumber()
        : Number(seconds);
  return Number.isFinite(n) && n > 0 ? new Date(n * 1000).toISOString() : fallback;
}

export function statusName(status: number | null | undefined): string | undefined {
  if (status === null || status === undefined) return undefined;
  return proto.WebMessageInfo.Status[status] ?? String(status);
}

export function fromMessagesUpsert(upsert: BaileysEventMap['messages.upsert'], at: string): WhatsAppEvent[] {
  // 'append' is our own sends (the runtime records those itself when it sends), newsletter posts and
  // stubs, but also every message WhatsApp kept while this device was offline (`offline` on the stanza):
  // after a restart or a failover those are the messages that arrived meanwhile. Take them from contacts.
  const events: WhatsAppEvent[] = [];
  for (const message of upsert.messages) {
    if (upsert.type !== 'notify' && (message.key.fromMe || message.key.remoteJid?.endsWith('@newsletter')))
      continue;
    const event = fromMessage(message, at);
    if (event) events.push(event);
  }
  return events;
}

function fromMessage(message: WAMessage, at: string): WhatsAppEvent | undefined {
  const { key } = message;
  const chatJid = chatJidOf(key);
  const messageType = messageTypeOf(message.message);
  if (!key.id || !chatJid || !messageType) return undefined;
  const text = extractText(message.message);
  const timestamp = isoFromSeconds(message.messageTimestamp, at);
  if (key.fromMe) {
    // Sent by the account from another device (the phone, WhatsApp Web).
    return {
      type: 'MessageSent',
      data: {
        at,
        messageId: key.id,
        chatJid,
        messageType,
        text,
        timestamp,
        status: statusName(message.status) ?? 'SERVER_ACK',
      },
    };
  }
  const isGroup = Boolean(isJidGroup(chatJid));
  const senderJid = isGroup ? (preferPhoneJid(key.participant, key.participantAlt) ?? chatJid) : chatJid;
  return {
    type: 'MessageReceived',
    data: {
      at,
      messageId: key.id,
      chatJid,
      senderJid,
      fromMe: false,
      pushName: message.pushName ?? null,
      messageType,
      text,
      timestamp,
      isGroup,
    },
  };
}

export function fromMessagesUpdate(updates: BaileysEventMap['messages.update'], at: string): WhatsAppEvent[] {
  const events: WhatsAppEvent[] = [];
  for (const { key, update } of updates) {
    const chatJid = chatJidOf(key);
    if (!key.id || !chatJid) continue;
    const status = statusName(update.status);
    const edited = Boolean(update.message?.editedMessage);
    const deleted = update.messageStubType === WAMessageStubType.REVOKE;
    if (!status && !edited && !deleted) continue;
    events.push({
      type: 'MessageUpdated',
      data: {
        at,
        messageId: key.id,
        chatJid,
        ...(status ? { status } : {}),
        ...(edited ? { edited } : {}),
        ...(deleted ? { deleted } : {}),
      },
    });
  }
  return events;
}

export function fromReactions(
  reactions: BaileysEventMap['messages.reaction'],
  at: string,
  selfJid: string | undefined,
): WhatsAppEvent[] {
  const events: WhatsAppEvent[] = [];
  for (const { key, reaction } of reactions) {
    const chatJid = chatJidOf(key);
    if (!key.id || !chatJid) continue;
    const by = reaction.key as WAMessageKey | null | undefined;
    const senderJid = by?.fromMe
      ? (selfJid ?? chatJid)
      : (preferPhoneJid(by?.participant, by?.participantAlt) ??
        preferPhoneJid(by?.remoteJid, by?.remoteJidAlt) ??
        chatJid);
    // An empty emoji means the reaction was removed.
    events.push({
      type: 'MessageReacted',
      data: { at, messageId: key.id, chatJid, senderJid, emoji: reaction.text ?? '' },
    });
  }
  return events;
}

export function fromGroupsUpdate(updates: BaileysEventMap['groups.update'], at: string): WhatsAppEvent[] {
  const events: WhatsAppEvent[] = [];
  for (const update of updates) {
    const groupJid = normaliseJid(update.id);
    if (!groupJid) continue;
    const changes: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(update)) {
      if (name === 'id' || value === undefined) continue;
      changes[name] = jsonSafe(value);
    }
    events.push({ type: 'GroupUpdated', data: { at, groupJid, changes } });
  }
  return events;
}

export function fromGroupParticipants(
  update: BaileysEventMap['group-participants.update'],
  at: string,
): WhatsAppEvent[] {
  const groupJid = normaliseJid(update.id);
  if (!groupJid) return [];
  const participants: string[] = [];
  for (const participant of update.participants as ReadonlyArray<unknown>) {
    // Baileys 7 gives objects ({id, phoneNumber}); older releases gave plain jids.
    const jid =
      typeof participant === 'string'
        ? normaliseJid(participant)
        : participant && typeof participant === 'object'
          ? preferPhoneJid(
              (participant as { id?: string }).id,
              (participant as { phoneNumber?: string }).phoneNumber,
            )
          : undefined;
    if (jid) participants.push(jid);
  }
  return [{ type: 'GroupParticipantsUpdated', data: { at, groupJid, action: update.action, participants } }];
}

export function fromPresence(update: BaileysEventMap['presence.update'], at: string): WhatsAppEvent[] {
  const chatJid = normaliseJid(update.id);
  if (!chatJid) return [];
  return Object.entries(update.presences).map(([participant, data]) => ({
    type: 'PresenceUpdated' as const,
    data: {
      at,
      chatJid,
      participantJid: normaliseJid(participant) ?? participant,
      presence: data.lastKnownPresence,
    },
  }));
}

export function fromCalls(calls: BaileysEventMap['call'], at: string): WhatsAppEvent[] {
  return calls.map((call) => ({
    type: 'CallReceived' as const,
    data: {
      at,
      callId: call.id,
      // Kept as WhatsApp addressed it: rejecting the call must name the same caller.
      fromJid: call.from,
      isVideo: Boolean(call.isVideo),
      status: call.status,
      rejected: call.status === 'reject',
    },
  }));
}

export function fromContacts(
  contacts: BaileysEventMap['contacts.upsert'] | BaileysEventMap['contacts.update'],
  at: string,
): WhatsAppEvent[] {
  const events: WhatsAppEvent[] = [];
  for (const contact of contacts) {
    const jid = preferPhoneJid(contact.id, contact.phoneNumber);
    // Picture-only updates carry neither name: nothing for the CONTACT_UPDATE event to say.
    if (!jid || (contact.name === undefined && contact.notify === undefined)) continue;
    events.push({
      type: 'ContactUpdated',
      data: { at, jid, name: contact.name ?? null, notify: contact.notify ?? null },
    });
  }
  return events;
}

export function fromLabel(label: BaileysEventMap['labels.edit'], at: string): WhatsAppEvent[] {
  if (!label.id) return [];
  return [
    {
      type: 'LabelUpdated',
      data: {
        at,
        labelId: label.id,
        name: label.name ?? '',
        color: typeof label.color === 'number' ? label.color : null,
        deleted: Boolean(label.deleted),
      },
    },
  ];
}

/** The Baileys events this adapter turns into traffic. */
export type TrafficEvents = Pick<
  Partial<BaileysEventMap>,
  | 'messages.upsert'
  | 'messages.update'
  | 'messages.reaction'
  | 'groups.update'
  | 'group-participants.update'
  | 'presence.update'
  | 'call'
  | 'contacts.upsert'
  | 'contacts.update'
  | 'labels.edit'
>;

/** One batch of Baileys events (as `ev.process` hands them over) → domain events, in a stable order. */
export function translateBatch(batch: TrafficEvents, at: string, selfJid?: string): WhatsAppEvent[] {
  const events: WhatsAppEvent[] = [];
  if (batch['messages.upsert']) events.push(...fromMessagesUpsert(batch['messages.upsert'], at));
  if (batch['messages.update']) events.push(...fromMessagesUpdate(batch['messages.update'], at));
  if (batch['messages.reaction']) events.push(...fromReactions(batch['messages.reaction'], at, selfJid));
  if (batch['groups.update']) events.push(...fromGroupsUpdate(batch['groups.update'], at));
  if (batch['group-participants.update'])
    events.push(...fromGroupParticipants(batch['group-participants.update'], at));
  if (batch['presence.update']) events.push(...fromPresence(batch['presence.update'], at));
  if (batch.call) events.push(...fromCalls(batch.call, at));
  if (batch['contacts.upsert']) events.push(...fromContacts(batch['contacts.upsert'], at));
  if (batch['contacts.update']) events.push(...fromContacts(batch['contacts.update'], at));
  if (batch['labels.edit']) events.push(...fromLabel(batch['labels.edit'], at));
  return events;
}

function jsonSafe(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'bigint') return value.toString();
  if (value && typeof value === 'object' && 'toNumber' in value && typeof value.toNumber === 'function') {
    return (value as { toNumber(): number }).toNumber();
  }
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = jsonSafe(v);
    return out;
  }
  return value;
}
