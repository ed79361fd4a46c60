/**
 * What a companion sends: messages (one Signal ciphertext per recipient device, routed to phones that
 * decrypt them or to other companions as they are) and receipts (recorded by phones, relayed to
 * companions).
 */
import type { ClientConnection } from './connection.ts';
import { bytes, child, children, node, unixSeconds, type BinaryNode } from './nodes.ts';
import { messageStanza, phoneReceive, phoneResend, type StanzaMeta } from './phone.ts';
import { ackDelayOf, refusalOf } from './send-faults.ts';
import type { SandboxContext } from './context.ts';
import type { CipherType } from './signal-device.ts';
import type { PhoneReceipt } from './types.ts';

/** Receipt types that only concern the sender's own bookkeeping (history sync, peer messages). */
const SILENT_RECEIPTS = new Set(['peer_msg', 'hist_sync', 'sender', 'server-error']);

export async function handleClientMessage(
  server: SandboxContext,
  conn: ClientConnection,
  stanza: BinaryNode,
): Promise<void> {
  const sender = conn.companion;
  if (!sender) return;
  const { id, to, type, category } = stanza.attrs;
  if (!id || !to) return;
  const t = unixSeconds();
  // A restricted account's messages are refused in the ack and go nowhere (send-faults.ts).
  const refused = refusalOf(server, sender.account);
  if (refused) {
    conn.send(node('ack', { class: 'message', id, from: to, t, error: refused }));
    return;
  }
  // Normally at once; held while the account's acks are slowed down, until the message is delivered.
  const ackDelay = ackDelayOf(server, sender.account);
  if (ackDelay === 0) conn.send(node('ack', { class: 'message', id, from: to, t }));
  const participants = child(stanza, 'participants');
  const direct = child(stanza, 'enc');
  const targets = participants
    ? children(participants, 'to').map((p) => ({ jid: p.attrs.jid ?? '', enc: child(p, 'enc') }))
    : [{ jid: to, enc: direct }];
  const chat = server.findAccount(to);
  const meta: StanzaMeta = {
    id,
    t,
    type: type ?? 'text',
    chatJid: chat?.pnJid ?? to,
    addressing: 'pn',
    category: category === 'peer' ? 'peer' : undefined,
  };
  await Promise.all(
    targets.map(async ({ jid, enc }) => {
      const ciphertext = bytes(enc);
      const cipher = enc?.attrs.type;
      const device = server.findDevice(jid);
      if (!device || !ciphertext || (cipher !== 'pkmsg' && cipher !== 'msg')) {
        server.logger.debug('undeliverable part', { id, jid, cipher });
        return;
      }
      const encrypted = { type: cipher as CipherType, ciphertext };
      if (device.kind === 'phone') await phoneReceive(server, device.account, sender, encrypted, meta);
      else if (device !== sender) server.deliver(device, messageStanza(sender, device, meta, encrypted));
    }),
  );
  if (ackDelay > 0)
    setTimeout(() => {
      try {
        conn.send(node('ack', { class: 'message', id, from: to, t }));
      } catch {
        // the device went away meanwhile: the ack it never gets is the point
      }
    }, ackDelay).unref();
}

export function handleClientReceipt(
  server: SandboxContext,
  conn: ClientConnection,
  stanza: BinaryNode,
): void {
  const sender = conn.companion;
  if (!sender) return;
  const { id, to, type } = stanza.attrs;
  if (!id) return;
  conn.send(node('ack', { class: 'receipt', id, from: to, type }));
  if (!to || (type && SILENT_RECEIPTS.has(type))) return;
  const target = server.findDevice(to);
  if (!target) return;
  if (type === 'retry') {
    server.logger.warn('device could not decrypt a message; asks again', {
      device: sender.pnJid,
      id,
      from: to,
    });
    // A message of the account's phone is sent again by the sandbox; a companion's own message is the
    // companion's to send again: the receipt goes to it below, as other receipts do.
    const record = target.account.sent.find((m) => m.id === id);
    if (record) {
      void phoneResend(server, target.account, sender, record).catch((err: unknown) =>
        server.logger.warn('phone could not send a message again', { id, err: String(err) }),
      );
      return;
    }
  }
  const ids = [id, ...children(child(stanza, 'list'), 'item').map((item) => item.attrs.id ?? '')].filter(
    Boolean,
  );
  const relay = (): BinaryNode =>
    node(
      'receipt',
      { from: sender.account.pnJid, id, t: stanza.attrs.t ?? unixSeconds(), type },
      stanza.content,
    );
  if (target.kind === 'companion') {
    server.deliver(target, relay());
    return;
  }
  // A receipt to a user (not a device) is for the user's phone, and its linked devices see it too.
  for (const receiptId of ids) {
    const record: PhoneReceipt = {
      id: receiptId,
      from: sender.account.pnJid,
      fromDevice: sender.pnJid,
      type: type ?? 'delivery',
      at: Date.now(),
    };
    target.account.receipts.push(record);
    server.emitPhoneReceipt(target.account, record);
  }
  server.deliverToAccount(target.account, relay, sender);
}
