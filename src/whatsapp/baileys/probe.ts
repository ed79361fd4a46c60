/**
 * The health probe of a Baileys connection (the port's ConnectionProbe).
 *
 * - Transport: a keepalive ping (`<iq xmlns=w:p><ping/>`, the one Baileys sends every
 *   `keepAliveIntervalMs`) whose answer is timed. Baileys' own keepalive only notices a dead socket when no
 *   frame at all arrived for an interval and 5 s, so a route that still carries other traffic but drops
 *   pings goes unnoticed there; this one notices the missing answer itself.
 * - Delivery: a peer message to the account's own phone, an empty `APP_STATE_SYNC_KEY_REQUEST` (what
 *   Baileys asks the phone for when it misses app-state keys), sent with `category=peer`. WhatsApp routes
 *   it to the phone and the phone's `peer_msg` receipt back to this device: a round trip through
 *   WhatsApp's routing to this very device. It creates no chat entry anywhere; it needs the phone to be
 *   reachable, as everything the phone sends does.
 * - Decryption: incoming messages counted as Baileys upserts them, a CIPHERTEXT stub being one that
 *   failed to decrypt (No matching sessions, Bad MAC; Baileys has sent a retry receipt for it).
 */
import type { BaileysEventMap, BinaryNode } from '@whiskeysockets/baileys';
import type { ConnectionProbe, DecryptionCounts } from '../port.ts';

/** Baileys' stub type for a message it could not decrypt (proto.WebMessageInfo.StubType.CIPHERTEXT). */
const CIPHERTEXT_STUB = 2;
/** proto.Message.ProtocolMessage.Type.APP_STATE_SYNC_KEY_REQUEST */
const APP_STATE_SYNC_KEY_REQUEST = 8;
/** Senders whose failures are counted one by one; beyond that they only add to the total. */
const MAX_SENDERS = 1_000;

/** The part of a Baileys socket the probe uses. */
export interface ProbeSocket {
  readonly ws: {
    on(event: string, listener: (node: BinaryNode) => void): unknown;
    off(event: string, listener: (node: BinaryNode) => void): unknown;
  };
  readonly user: { id: string } | undefined;
  query(node: BinaryNode, timeoutMs?: number): Promise<unknown>;
  relayMessage(
    jid: string,
    message: Record<string, unknown>,
    options: { additionalAttributes?: Record<string, string>; messageId?: string },
  ): Promise<string>;
  readonly signalRepository: { deleteSession(jids: string[]): Promise<void> };
}

export class BaileysProbe implements ConnectionProbe {
  private decrypted = 0;
  private failed = 0;
  private readonly failedBySender = new Map<string, number>();
  /** The other address (LID or phone number) of a sender that failed, for resetSession. */
  private readonly alternative = new Map<string, string>();

  constructor(
    private readonly socket: () => ProbeSocket | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  async ping(timeoutMs: number): Promise<number> {
    const socket = this.require();
    const started = this.now();
    await socket.query(
      {
        tag: 'iq',
        attrs: { to: 's.whatsapp.net', type: 'get', xmlns: 'w:p' },
        content: [{ tag: 'ping', attrs: {} }],
      },
      timeoutMs,
    );
    return this.now() - started;
  }

  async probeDelivery(timeoutMs: number): Promise<number> {
    const socket = this.require();
    const me = socket.user?.id;
    if (!me) throw new Error('the connection has no account yet');
    const ownJid = me.replace(/:\d+@/, '@');
    const id = `ZWPROBE${randomHex(8)}`;
    const started = this.now();
    let listener: ((node: BinaryNode) => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<void>((resolve, reject) => {
      listener = (node) => {
        if (node.attrs.id === id) resolve();
      };
      socket.ws.on('CB:receipt', listener);
      timer = setTimeout(
        () => reject(new Error(`no answer to the delivery probe in ${Math.round(timeoutMs / 1000)} s`)),
        timeoutMs,
      );
    });
    try {
      await socket.relayMessage(
        ownJid,
        {
          protocolMessage: {
            type: APP_STATE_SYNC_KEY_REQUEST,
            appStateSyncKeyRequest: { keyIds: [] },
          },
        },
        { messageId: id, additionalAttributes: { category: 'peer', push_priority: 'high_force' } },
      );
      await answered;
      return this.now() - started;
    } finally {
      clearTimeout(timer);
      if (listener) socket.ws.off('CB:receipt', listener);
    }
  }

  decryption(): DecryptionCounts {
    return { decrypted: this.decrypted, failed: this.failed, failedBySender: this.failedBySender };
  }

  async resetSession(contactJid: string): Promise<void> {
    const socket = this.require();
    const jids = [contactJid, this.alternative.get(contactJid)].filter((j): j is string => !!j);
    await socket.signalRepository.deleteSession(jids.map(userJid));
  }

  /** Counts the incoming messages of a `messages.upsert`. */
  observe(upsert: BaileysEventMap['messages.upsert'] | undefined): void {
    if (!upsert) return;
    for (const message of upsert.messages) {
      if (message.key.fromMe) continue;
      if (message.messageStubType === CIPHERTEXT_STUB) {
        this.failed += 1;
        const sender = message.key.participant || message.key.remoteJid;
        if (!sender) continue;
        const alt = message.key.participantAlt || message.key.remoteJidAlt;
        if (alt && this.alternative.size < MAX_SENDERS) this.alternative.set(sender, alt);
        const count = this.failedBySender.get(sender);
        if (count !== undefined) this.failedBySender.set(sender, count + 1);
        else if (this.failedBySender.size < MAX_SENDERS) this.failedBySender.set(sender, 1);
      } else if (message.message) this.decrypted += 1;
    }
  }

  private require(): ProbeSocket {
    const socket = this.socket();
    if (!socket) throw new Error('the connection is not open');
    return socket;
  }
}

/** The JID of the user's main device: no device suffix. */
function userJid(jid: string): string {
  const [user = '', server = 's.whatsapp.net'] = jid.split('@');
  return `${user.split(':')[0]}@${server}`;
}

function randomHex(bytes: number): string {
  let out = '';
  for (let i = 0; i < bytes; i++)
    out += Math.floor(Math.random() * 256)
      .toString(16)
      .padStart(2, '0');
  return out.toUpperCase();
}
