/**
 * The per-profile payload renderers as pure functions: the default one is zapwire's envelope byte for
 * byte; the Evolution GO one maps each zapwire event to the whatsmeow event Evolution GO sends for it.
 */
import { describe, expect, it } from 'vitest';
import { buildEnvelope, serializeEnvelope } from '../../../src/sinks/envelope.ts';
import { payloadRenderer } from '../../../src/sinks/payload.ts';
import { routeOf } from '../../../src/sinks/routing.ts';
import type { RecordedEvent } from '../../../src/store/port.ts';

const AT = '2026-12-01T10:00:00.000Z';
const instance = { id: 'i-1', name: 'sales' };
let serial = 0;

function recorded(type: string, data: Record<string, unknown>, stream = 'wa-i-1'): RecordedEvent {
  serial += 1;
  return {
    id: `e-${serial}`,
    stream,
    streamPosition: serial,
    position: `p${serial}` as RecordedEvent['position'],
    type,
    data: { at: AT, ...data },
    metadata: {},
    createdAt: new Date(AT),
  };
}

const evo = payloadRenderer('evolution-go', { qrCodeMaxCount: 5 });

async function render(event: RecordedEvent): Promise<Record<string, unknown> | undefined> {
  const route = routeOf(event);
  expect(route, `${event.type} is a sink event`).toBeDefined();
  const body = await evo.render(event, instance, route!.name);
  return body === undefined ? undefined : (JSON.parse(body) as Record<string, unknown>);
}

describe('default payload', () => {
  it("is zapwire's envelope, unchanged", async () => {
    const event = recorded('MessageReceived', { messageId: 'M1', chatJid: 'c', text: 'hi' });
    const body = await payloadRenderer().render(event, instance, 'MESSAGE');
    expect(body).toBe(serializeEnvelope(buildEnvelope(event, instance, 'MESSAGE')));
  });
});

describe('Evolution GO payload', () => {
  const message = {
    messageId: 'M1',
    chatJid: '5511@s.whatsapp.net',
    senderJid: '5511@s.whatsapp.net',
    fromMe: false,
    pushName: 'Ana',
    messageType: 'text',
    text: 'oi',
    timestamp: AT,
    isGroup: false,
  };

  it('wraps every event as {data, event, instanceId, instanceName}, keys sorted, no token', async () => {
    const body = await render(recorded('MessageReceived', message));
    expect(Object.keys(body!)).toEqual(['data', 'event', 'instanceId', 'instanceName']);
    expect(body).toMatchObject({ event: 'Message', instanceId: 'i-1', instanceName: 'sales' });
    expect(JSON.stringify(body)).not.toMatch(/instanceToken|token/i);
  });

  it('maps messages, sends, reactions, edits and deletions', async () => {
    expect((await render(recorded('MessageReceived', message)))!['data']).toEqual({
      Info: {
        Chat: '5511@s.whatsapp.net',
        Sender: '5511@s.whatsapp.net',
        IsFromMe: false,
        IsGroup: false,
        ID: 'M1',
        Type: 'text',
        MediaType: '',
        PushName: 'Ana',
        Timestamp: AT,
      },
      IsEdit: false,
      Message: { conversation: 'oi' },
    });
    const image = await render(
      recorded('MessageReceived', { ...message, messageType: 'image', text: 'foto' }),
    );
    expect(image!['data']).toMatchObject({
      Info: { Type: 'media', MediaType: 'image' },
      Message: { imageMessage: { caption: 'foto' } },
    });
    const sent = await render(
      recorded('MessageSent', {
        messageId: 'S1',
        chatJid: '120@g.us',
        messageType: 'text',
        text: 'olá',
        timestamp: AT,
        status: 'SERVER_ACK',
      }),
    );
    expect(sent).toMatchObject({
      event: 'SendMessage',
      data: {
        Info: { ID: 'S1', Chat: '120@g.us', IsFromMe: true, IsGroup: true, ServerID: 0 },
        Message: { extendedTextMessage: { text: 'olá' } },
        MessageContextInfo: {},
      },
    });
    const reaction = await render(
      recorded('MessageReacted', {
        messageId: 'M1',
        chatJid: 'c@s.whatsapp.net',
        senderJid: 's',
        emoji: '👍',
      }),
    );
    expect(reaction).toMatchObject({
      event: 'Message',
      data: {
        Info: { Type: 'reaction', Sender: 's' },
        Message: { reactionMessage: { key: { remoteJID: 'c@s.whatsapp.net', ID: 'M1' }, text: '👍' } },
      },
    });
    const edit = await render(recorded('MessageUpdated', { messageId: 'M1', chatJid: 'c', edited: true }));
    expect(edit).toMatchObject({
      event: 'Message',
      data: { IsEdit: true, messageType: 'edit', Message: { protocolMessage: { typeName: 'MESSAGE_EDIT' } } },
    });
    const revoke = await render(recorded('MessageUpdated', { messageId: 'M1', chatJid: 'c', deleted: true }));
    expect(revoke).toMatchObject({
      event: 'Message',
      data: {
        IsRevoke: true,
        messageType: 'revoke',
        Message: { protocolMessage: { type: 0, typeName: 'REVOKE' } },
      },
    });
  });

  it('sends read and delivered receipts with a top-level state, and nothing for other statuses', async () => {
    const read = await render(
      recorded('MessageUpdated', { messageId: 'M1', chatJid: 'c@s.whatsapp.net', status: 'READ' }),
    );
    expect(read).toEqual({
      data: {
        Chat: 'c@s.whatsapp.net',
        IsFromMe: false,
        IsGroup: false,
        MessageIDs: ['M1'],
        Sender: 'c@s.whatsapp.net',
        Timestamp: AT,
        Type: 'read',
      },
      event: 'Receipt',
      instanceId: 'i-1',
      instanceName: 'sales',
      state: 'Read',
    });
    const delivered = await render(
      recorded('MessageUpdated', { messageId: 'M1', chatJid: 'c', status: 'DELIVERY_ACK' }),
    );
    expect(delivered).toMatchObject({ event: 'Receipt', state: 'Delivered', data: { Type: '' } });
    expect(
      await render(recorded('MessageUpdated', { messageId: 'M1', chatJid: 'c', status: 'SERVER_ACK' })),
    ).toBeUndefined();
  });

  it('splits presence into Presence (online/offline) and ChatPresence (typing, recording)', async () => {
    const presence = (p: string) =>
      recorded('PresenceUpdated', { chatJid: 'c', participantJid: 'p', presence: p });
    expect(await render(presence('available'))).toMatchObject({
      event: 'Presence',
      state: 'online',
      data: { From: 'p', Unavailable: false },
    });
    expect(await render(presence('unavailable'))).toMatchObject({
      event: 'Presence',
      state: 'offline',
      data: { Unavailable: true },
    });
    expect(await render(presence('composing'))).toMatchObject({
      event: 'ChatPresence',
      data: { State: 'composing', Media: '' },
    });
    expect(await render(presence('recording'))).toMatchObject({
      event: 'ChatPresence',
      data: { State: 'composing', Media: 'audio' },
    });
    expect(await render(presence('paused'))).toMatchObject({
      event: 'ChatPresence',
      data: { State: 'paused' },
    });
  });

  it('maps calls, contacts, labels and groups', async () => {
    const call = (status: string) =>
      recorded('CallReceived', { callId: 'C1', fromJid: 'f', isVideo: true, status, rejected: false });
    expect(await render(call('offer'))).toMatchObject({
      event: 'CallOffer',
      data: { CallID: 'C1', CallCreator: 'f', From: 'f' },
    });
    expect(await render(call('ringing'))).toMatchObject({
      event: 'CallOfferNotice',
      data: { Media: 'video' },
    });
    expect(await render(call('accept'))).toMatchObject({ event: 'CallAccept' });
    expect(await render(call('timeout'))).toMatchObject({
      event: 'CallTerminate',
      data: { Reason: 'timeout' },
    });
    expect(
      await render(recorded('ContactUpdated', { jid: 'j', name: 'Ana Lima', notify: 'Ana' })),
    ).toMatchObject({
      event: 'Contact',
      data: { JID: 'j', Action: { fullName: 'Ana Lima' } },
    });
    expect(await render(recorded('ContactUpdated', { jid: 'j', name: null, notify: 'Ana' }))).toMatchObject({
      event: 'PushName',
      data: { JID: 'j', NewPushName: 'Ana' },
    });
    expect(
      await render(recorded('LabelUpdated', { labelId: '3', name: 'VIP', color: 2, deleted: false })),
    ).toMatchObject({
      event: 'LabelEdit',
      data: { LabelID: '3', Action: { name: 'VIP', color: 2, deleted: false } },
    });
    expect(
      await render(
        recorded('GroupUpdated', { groupJid: 'g@g.us', changes: { subject: 'Equipe', announce: true } }),
      ),
    ).toMatchObject({
      event: 'GroupInfo',
      data: { JID: 'g@g.us', Name: { Name: 'Equipe' }, Announce: { IsAnnounce: true } },
    });
    expect(
      await render(
        recorded('GroupParticipantsUpdated', { groupJid: 'g@g.us', action: 'add', participants: ['a', 'b'] }),
      ),
    ).toMatchObject({ event: 'GroupInfo', data: { JID: 'g@g.us', Join: ['a', 'b'] } });
  });

  it('maps the connection lifecycle and QR codes', async () => {
    const inst = (type: string, data: Record<string, unknown>) => recorded(type, data, 'instance-i-1');
    expect(await render(inst('ConnectionStarting', { trigger: 'connect', attempt: 1 }))).toBeUndefined();
    const qr = await render(inst('QrCodeIssued', { code: '2@abc', expiresAt: AT, count: 2 }));
    expect(qr).toMatchObject({ event: 'QRCode', data: { code: '2@abc', count: 2, maxCount: 5 } });
    expect((qr!['data'] as { qrcode: string }).qrcode).toMatch(/^data:image\/png;base64,/);
    expect(
      await render(inst('InstanceOpened', { jid: '5511@s.whatsapp.net', pushName: 'Loja' })),
    ).toMatchObject({
      event: 'Connected',
      data: { status: 'open', jid: '5511@s.whatsapp.net', pushName: 'Loja' },
    });
    const closed = (reason: string, extra: Record<string, unknown> = {}) =>
      inst('ConnectionClosed', { code: null, reason, willReconnect: false, retryInMs: null, ...extra });
    expect(await render(closed('logged_out'))).toMatchObject({
      event: 'LoggedOut',
      data: { Reason: 401, reason: 'logged out' },
    });
    expect(await render(closed('banned', { code: 403 }))).toMatchObject({
      event: 'ConnectFailure',
      data: { Reason: 403 },
    });
    expect(await render(closed('qr_timeout'))).toMatchObject({ event: 'QRTimeout', data: {} });
    expect(await render(closed('connection_lost'))).toMatchObject({ event: 'Disconnected', data: {} });
    expect(await render(closed('user_logout'))).toBeUndefined();
    expect(await render(inst('SessionRemoved', { reason: 'user_logout' }))).toMatchObject({
      event: 'LoggedOut',
      data: { reason: 'Logged out' },
    });
    expect(await render(inst('SessionRemoved', { reason: 'logged_out' }))).toBeUndefined();
  });

  it('renders the same bytes every time (a retry repeats the same body)', async () => {
    const event = recorded('QrCodeIssued', { code: '2@same', expiresAt: AT, count: 1 }, 'instance-i-1');
    const a = await evo.render(event, instance, 'QR_CODE');
    const b = await evo.render(event, instance, 'QR_CODE');
    expect(a).toBe(b);
  });
});
