/**
 * What a phone sends a companion right after its first login: the app-state key (so the device can
 * read the account's syncd collections) and an inline initial history sync (recent chats and the
 * phone-number ↔ LID mappings). Without the history sync Baileys holds its events back for up to 20 s
 * after a first login, waiting for it.
 */
import { deflateSync } from 'node:zlib';
import type { Account, Companion } from './model.ts';
import { phoneSendPeer } from './phone.ts';
import type { SandboxContext } from './context.ts';
import type { PhoneMessage } from './types.ts';
import { proto } from './wa.ts';

const MESSAGES_PER_CHAT = 20;

export async function pushFirstLoginSync(server: SandboxContext, companion: Companion): Promise<void> {
  const account = companion.account;
  const key = account.appStateKey;
  await phoneSendPeer(server, account, companion, {
    protocolMessage: {
      type: proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_SHARE,
      appStateSyncKeyShare: {
        keys: [
          {
            keyId: { keyId: key.keyId },
            keyData: {
              keyData: key.keyData,
              fingerprint: { rawId: 1, currentIndex: 0, deviceIndexes: [0] },
              timestamp: key.timestamp,
            },
          },
        ],
      },
    },
  });
  const history = proto.HistorySync.encode(initialHistory(server, account)).finish();
  await phoneSendPeer(server, account, companion, {
    protocolMessage: {
      type: proto.Message.ProtocolMessage.Type.HISTORY_SYNC_NOTIFICATION,
      historySyncNotification: {
        syncType: proto.Message.HistorySyncType.INITIAL_BOOTSTRAP,
        initialHistBootstrapInlinePayload: deflateSync(history),
        chunkOrder: 0,
        progress: 100,
      },
    },
  });
}

function initialHistory(server: SandboxContext, account: Account): proto.IHistorySync {
  const byChat = new Map<string, PhoneMessage[]>();
  for (const message of [...account.sent.list(), ...account.inbox.list()]) {
    if (!message.chat.endsWith('@s.whatsapp.net')) continue;
    const list = byChat.get(message.chat) ?? [];
    list.push(message);
    byChat.set(message.chat, list);
  }
  for (const jid of account.contacts.keys()) if (!byChat.has(jid)) byChat.set(jid, []);
  const mappings: proto.IPhoneNumberToLIDMapping[] = [];
  const conversations: proto.IConversation[] = [...byChat].map(([jid, messages]) => {
    const other = server.findAccount(jid);
    if (other) mappings.push({ pnJid: other.pnJid, lidJid: other.lidJid });
    const recent = messages.sort((a, b) => b.timestamp - a.timestamp).slice(0, MESSAGES_PER_CHAT);
    return {
      id: jid,
      name: account.contacts.get(jid) ?? other?.name,
      lidJid: other?.lidJid,
      conversationTimestamp: recent[0]?.timestamp ?? account.createdAt,
      unreadCount: 0,
      messages: recent.map((m, i) => ({
        msgOrderId: recent.length - i,
        message: {
          key: { remoteJid: jid, fromMe: m.fromMe, id: m.id },
          message: proto.Message.fromObject(m.message),
          messageTimestamp: m.timestamp,
          pushName: m.fromMe ? undefined : other?.name,
          status: m.fromMe ? proto.WebMessageInfo.Status.DELIVERY_ACK : proto.WebMessageInfo.Status.READ,
        },
      })),
    };
  });
  return {
    syncType: proto.HistorySync.HistorySyncType.INITIAL_BOOTSTRAP,
    conversations,
    phoneNumberToLidMappings: mappings,
    progress: 100,
    chunkOrder: 0,
  };
}
