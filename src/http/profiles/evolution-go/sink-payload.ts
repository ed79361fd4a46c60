/**
 * Evolution GO's webhook body for a zapwire event (API_COMPAT=evolution-go), rendered for the sinks
 * (src/sinks/payload.ts picks it; it needs nothing of theirs but the event and the instance's id and name): `{data, event, instanceId,
 * instanceName}` plus `state` for `Receipt` and `Presence`, with whatsmeow's event names (`Message`,
 * `SendMessage`, `Receipt`, `Presence`, `ChatPresence`, `CallOffer`, `Connected`, `LoggedOut`, `QRCode`, …)
 * and `data` in the shape Evolution GO serialises whatsmeow's structs: Go field names without JSON tags
 * (`Info.ID`, `Info.Chat`, `MessageIDs`), protobuf messages in lowerCamel (`conversation`,
 * `extendedTextMessage`), JIDs as strings, times in RFC 3339. Keys in alphabetical order, as Go's
 * encoding/json writes a map.
 *
 * Deliberately left out: `instanceToken` (a secret: never in a payload). Fields zapwire does not know are
 * empty rather than invented (`Sender` of a sent message, `RemotePlatform` of a call). docs/evolution-go.md
 * lists the mapping and what has no counterpart.
 */
import QRCode from 'qrcode';
import type { WhatsAppEventMap, InstanceEventMap } from '../../../domain/events.ts';
import type { RecordedEvent } from '../../../store/port.ts';

/** The instance a payload is about: all the renderer needs from the sinks. */
export interface PayloadInstance {
  readonly id: string;
  readonly name: string;
}

export interface EvolutionGoPayload {
  readonly data: Readonly<Record<string, unknown>>;
  readonly event: string;
  readonly instanceId: string;
  readonly instanceName: string;
  readonly state?: string;
}

interface Rendered {
  readonly event: string;
  readonly data: Readonly<Record<string, unknown>>;
  readonly state?: string;
}

const isGroupJid = (jid: string): boolean => jid.endsWith('@g.us');

/** Protobuf field of each zapwire message type (waE2E.Message, lowerCamel as Evolution GO marshals it). */
const MESSAGE_FIELDS: Readonly<Record<string, string>> = {
  image: 'imageMessage',
  video: 'videoMessage',
  audio: 'audioMessage',
  document: 'documentMessage',
  sticker: 'stickerMessage',
  location: 'locationMessage',
  contact: 'contactMessage',
  contacts: 'contactsArrayMessage',
  poll: 'pollCreationMessage',
};

/** zapwire's message type (`text`, `image`, …); events written before the names were shortened say `conversation`. */
function kindOf(messageType: string): string {
  const kind = messageType.replace(/Message$/, '');
  return kind === 'conversation' || kind === 'extendedText' ? 'text' : kind;
}

function messageBody(type: string, text: string | null): Record<string, unknown> {
  const messageType = kindOf(type);
  if (messageType === 'text') return { conversation: text ?? '' };
  const field = MESSAGE_FIELDS[messageType] ?? `${messageType}Message`;
  if (messageType === 'poll') return { [field]: text === null ? {} : { name: text } };
  return { [field]: text === null ? {} : { caption: text } };
}

/** whatsmeow's MessageInfo.Type: "text", "reaction", "poll" or "media" (with MediaType). */
function infoType(type: string): { Type: string; MediaType: string } {
  const messageType = kindOf(type);
  if (messageType === 'text') return { Type: 'text', MediaType: '' };
  if (messageType === 'poll') return { Type: 'poll', MediaType: '' };
  return { Type: 'media', MediaType: messageType };
}

function ordered<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) as T;
}

/** The QR's PNG as Evolution GO sends it (and as GET /instance/qr of this profile shows it). */
export function qrDataUrl(code: string): Promise<string> {
  return QRCode.toDataURL(code, { errorCorrectionLevel: 'L', margin: 2, width: 300 });
}

type Data<K extends keyof (WhatsAppEventMap & InstanceEventMap)> = (WhatsAppEventMap & InstanceEventMap)[K];

async function renderData(
  event: RecordedEvent,
  options: { readonly qrCodeMaxCount?: number },
): Promise<Rendered | undefined> {
  const raw = event.data;
  switch (event.type) {
    case 'MessageReceived': {
      const d = raw as unknown as Data<'MessageReceived'>;
      return {
        event: 'Message',
        data: {
          Info: {
            Chat: d.chatJid,
            Sender: d.senderJid,
            IsFromMe: false,
            IsGroup: d.isGroup,
            ID: d.messageId,
            ...infoType(d.messageType),
            PushName: d.pushName ?? '',
            Timestamp: d.timestamp,
          },
          Message: messageBody(d.messageType, d.text),
          IsEdit: false,
        },
      };
    }
    case 'MessageSent': {
      const d = raw as unknown as Data<'MessageSent'>;
      return {
        event: 'SendMessage',
        data: {
          Info: {
            Chat: d.chatJid,
            Sender: '',
            IsFromMe: true,
            IsGroup: isGroupJid(d.chatJid),
            ID: d.messageId,
            ServerID: 0,
            ...infoType(d.messageType),
            PushName: '',
            Timestamp: d.timestamp,
          },
          // Evolution GO's /send/text sends (and reports) an ExtendedTextMessage.
          Message:
            kindOf(d.messageType) === 'text'
              ? { extendedTextMessage: { text: d.text ?? '' } }
              : messageBody(d.messageType, d.text),
          MessageContextInfo: {},
        },
      };
    }
    case 'MessageReacted': {
      const d = raw as unknown as Data<'MessageReacted'>;
      return {
        event: 'Message',
        data: {
          Info: {
            Chat: d.chatJid,
            Sender: d.senderJid,
            IsFromMe: false,
            IsGroup: isGroupJid(d.chatJid),
            ID: '',
            Type: 'reaction',
            MediaType: '',
            PushName: '',
            Timestamp: d.at,
          },
          Message: {
            reactionMessage: { key: { remoteJID: d.chatJid, ID: d.messageId }, text: d.emoji },
          },
          IsEdit: false,
        },
      };
    }
    case 'MessageUpdated': {
      const d = raw as unknown as Data<'MessageUpdated'>;
      if (d.edited || d.deleted) {
        // Evolution GO sends edits and deletions as a Message carrying a protocolMessage and a flag.
        const edit = Boolean(d.edited);
        return {
          event: 'Message',
          data: {
            Info: {
              Chat: d.chatJid,
              Sender: '',
              IsFromMe: false,
              IsGroup: isGroupJid(d.chatJid),
              ID: d.messageId,
              Type: 'text',
              MediaType: '',
              PushName: '',
              Timestamp: d.at,
            },
            Message: {
              protocolMessage: {
                key: { remoteJID: d.chatJid, ID: d.messageId },
                type: edit ? 14 : 0,
                typeName: edit ? 'MESSAGE_EDIT' : 'REVOKE',
              },
            },
            IsEdit: edit,
            ...(edit ? {} : { IsRevoke: true }),
            messageType: edit ? 'edit' : 'revoke',
          },
        };
      }
      // Evolution GO forwards read and delivered receipts only.
      const state =
        d.status === 'READ' || d.status === 'PLAYED'
          ? 'Read'
          : d.status === 'DELIVERY_ACK'
            ? 'Delivered'
            : undefined;
      if (!state) return undefined;
      const group = isGroupJid(d.chatJid);
      return {
        event: 'Receipt',
        state,
        data: {
          Chat: d.chatJid,
          Sender: group ? '' : d.chatJid,
          IsFromMe: false,
          IsGroup: group,
          MessageIDs: [d.messageId],
          Timestamp: d.at,
          Type: state === 'Read' ? 'read' : '',
        },
      };
    }
    case 'PresenceUpdated': {
      const d = raw as unknown as Data<'PresenceUpdated'>;
      if (d.presence === 'available' || d.presence === 'unavailable') {
        const unavailable = d.presence === 'unavailable';
        return {
          event: 'Presence',
          state: unavailable ? 'offline' : 'online',
          data: { From: d.participantJid, Unavailable: unavailable, LastSeen: '0001-01-01T00:00:00Z' },
        };
      }
      return {
        event: 'ChatPresence',
        data: {
          Chat: d.chatJid,
          Sender: d.participantJid,
          IsFromMe: false,
          IsGroup: isGroupJid(d.chatJid),
          State: d.presence === 'paused' ? 'paused' : 'composing',
          Media: d.presence === 'recording' ? 'audio' : '',
        },
      };
    }
    case 'CallReceived': {
      const d = raw as unknown as Data<'CallReceived'>;
      const meta = { From: d.fromJid, Timestamp: d.at, CallCreator: d.fromJid, CallID: d.callId };
      switch (d.status) {
        case 'offer':
          return {
            event: 'CallOffer',
            data: { ...meta, RemotePlatform: '', RemoteVersion: '', Data: null },
          };
        case 'ringing':
          return {
            event: 'CallOfferNotice',
            data: { ...meta, Media: d.isVideo ? 'video' : 'audio', Type: '', Data: null },
          };
        case 'accept':
          return {
            event: 'CallAccept',
            data: { ...meta, RemotePlatform: '', RemoteVersion: '', Data: null },
          };
        default:
          return { event: 'CallTerminate', data: { ...meta, Reason: d.status, Data: null } };
      }
    }
    case 'ContactUpdated': {
      const d = raw as unknown as Data<'ContactUpdated'>;
      if (d.name !== null) {
        return {
          event: 'Contact',
          data: { JID: d.jid, Timestamp: d.at, Action: { fullName: d.name }, FromFullSync: false },
        };
      }
      return {
        event: 'PushName',
        data: { JID: d.jid, Message: null, OldPushName: '', NewPushName: d.notify ?? '' },
      };
    }
    case 'LabelUpdated': {
      const d = raw as unknown as Data<'LabelUpdated'>;
      return {
        event: 'LabelEdit',
        data: {
          Timestamp: d.at,
          LabelID: d.labelId,
          Action: { name: d.name, ...(d.color === null ? {} : { color: d.color }), deleted: d.deleted },
          FromFullSync: false,
        },
      };
    }
    case 'GroupUpdated': {
      const d = raw as unknown as Data<'GroupUpdated'>;
      const c = d.changes;
      return {
        event: 'GroupInfo',
        data: {
          JID: d.groupJid,
          Timestamp: d.at,
          ...(typeof c['subject'] === 'string' ? { Name: { Name: c['subject'] } } : {}),
          ...(typeof c['desc'] === 'string' ? { Topic: { Topic: c['desc'] } } : {}),
          ...(typeof c['announce'] === 'boolean' ? { Announce: { IsAnnounce: c['announce'] } } : {}),
          ...(typeof c['restrict'] === 'boolean' ? { Locked: { IsLocked: c['restrict'] } } : {}),
          ...(typeof c['ephemeralDuration'] === 'number'
            ? {
                Ephemeral: {
                  IsEphemeral: c['ephemeralDuration'] > 0,
                  DisappearingTimer: c['ephemeralDuration'],
                },
              }
            : {}),
        },
      };
    }
    case 'GroupParticipantsUpdated': {
      const d = raw as unknown as Data<'GroupParticipantsUpdated'>;
      const field = { add: 'Join', remove: 'Leave', promote: 'Promote', demote: 'Demote' }[
        d.action as string
      ];
      return {
        event: 'GroupInfo',
        data: { JID: d.groupJid, Timestamp: d.at, ...(field ? { [field]: [...d.participants] } : {}) },
      };
    }
    case 'QrCodeIssued': {
      const d = raw as unknown as Data<'QrCodeIssued'>;
      return {
        event: 'QRCode',
        data: {
          qrcode: await qrDataUrl(d.code),
          code: d.code,
          count: d.count,
          maxCount: options.qrCodeMaxCount ?? 0,
        },
      };
    }
    case 'InstanceOpened': {
      const d = raw as unknown as Data<'InstanceOpened'>;
      return { event: 'Connected', data: { status: 'open', jid: d.jid, pushName: d.pushName ?? '' } };
    }
    case 'ConnectionClosed': {
      const d = raw as unknown as Data<'ConnectionClosed'>;
      switch (d.reason) {
        case 'logged_out':
          return { event: 'LoggedOut', data: { OnConnect: false, Reason: 401, reason: 'logged out' } };
        case 'banned':
          return {
            event: 'ConnectFailure',
            data: { Reason: d.code ?? 403, Message: d.message ?? '', Raw: null },
          };
        case 'qr_timeout':
          return { event: 'QRTimeout', data: {} };
        case 'user_logout':
          // Sent as LoggedOut with the SessionRemoved recorded next to it.
          return undefined;
        default:
          return { event: 'Disconnected', data: {} };
      }
    }
    case 'SessionRemoved': {
      const d = raw as unknown as Data<'SessionRemoved'>;
      // A logout WhatsApp announced was already sent as LoggedOut with its ConnectionClosed.
      if (d.reason !== 'user_logout') return undefined;
      return { event: 'LoggedOut', data: { reason: 'Logged out' } };
    }
    default:
      // ConnectionStarting and anything new: Evolution GO sends nothing of the kind.
      return undefined;
  }
}

export async function renderEvolutionGoPayload(
  event: RecordedEvent,
  instance: PayloadInstance,
  options: { readonly qrCodeMaxCount?: number } = {},
): Promise<EvolutionGoPayload | undefined> {
  const rendered = await renderData(event, options);
  if (!rendered) return undefined;
  return ordered({
    data: ordered({ ...rendered.data }),
    event: rendered.event,
    instanceId: instance.id,
    instanceName: instance.name,
    ...(rendered.state === undefined ? {} : { state: rendered.state }),
  });
}
