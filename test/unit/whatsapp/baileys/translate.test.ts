import { describe, expect, it } from 'vitest';
import { proto, WAMessageStubType, type WAMessage } from '@whiskeysockets/baileys';
import { DEFAULT_ADVANCED_SETTINGS } from '../../../../src/domain/events.ts';
import { isIgnoredBySettings } from '../../../../src/domain/traffic-filter.ts';
import {
  extractText,
  messageTypeOf,
  preferPhoneJid,
  translateBatch,
} from '../../../../src/whatsapp/baileys/translate.ts';

const AT = '2026-01-02T03:04:05.000Z';
const PN = '5511988887777@s.whatsapp.net';
const LID = '123456789@lid';

function message(partial: Partial<WAMessage> & { key: WAMessage['key'] }): WAMessage {
  return { messageTimestamp: 1_767_323_045, ...partial } as WAMessage;
}

describe('text and type extraction', () => {
  it.each([
    [{ conversation: 'hi' }, 'hi', 'text'],
    [{ extendedTextMessage: { text: 'ext' } }, 'ext', 'text'],
    [{ imageMessage: { caption: 'img cap' } }, 'img cap', 'image'],
    [{ videoMessage: { caption: 'vid cap' } }, 'vid cap', 'video'],
    [{ ephemeralMessage: { message: { conversation: 'eph' } } }, 'eph', 'text'],
    [{ viewOnceMessageV2: { message: { imageMessage: { caption: 'once' } } } }, 'once', 'image'],
    [{ audioMessage: {} }, null, 'audio'],
    [{ stickerMessage: {} }, null, 'sticker'],
  ] as Array<[proto.IMessage, string | null, string]>)('%j → %s (%s)', (content, text, type) => {
    expect(extractText(content)).toBe(text);
    expect(messageTypeOf(content)).toBe(type);
  });

  it('has no type for protocol messages and reactions (they come as updates)', () => {
    expect(messageTypeOf({ protocolMessage: { type: 0 } })).toBeUndefined();
    expect(messageTypeOf({ reactionMessage: { text: '👍' } })).toBeUndefined();
    expect(messageTypeOf(null)).toBeUndefined();
  });

  it('prefers the phone-number jid and drops device suffixes', () => {
    expect(preferPhoneJid(LID, PN)).toBe(PN);
    expect(preferPhoneJid('5511988887777:12@s.whatsapp.net', LID)).toBe(PN);
    expect(preferPhoneJid(LID, undefined)).toBe(LID);
  });
});

describe('messages.upsert', () => {
  it('turns a notify message from a contact into MessageReceived', () => {
    const [event, ...rest] = translateBatch(
      {
        'messages.upsert': {
          type: 'notify',
          messages: [
            message({
              key: { remoteJid: LID, remoteJidAlt: PN, fromMe: false, id: 'M1' },
              pushName: 'Alice',
              message: { conversation: 'Olá!' },
            }),
          ],
        },
      },
      AT,
    );
    expect(rest).toEqual([]);
    expect(event).toEqual({
      type: 'MessageReceived',
      data: {
        at: AT,
        messageId: 'M1',
        chatJid: PN,
        senderJid: PN,
        fromMe: false,
        pushName: 'Alice',
        messageType: 'text',
        text: 'Olá!',
        timestamp: new Date(1_767_323_045_000).toISOString(),
        isGroup: false,
      },
    });
  });

  it('names the participant as sender in a group', () => {
    const [event] = translateBatch(
      {
        'messages.upsert': {
          type: 'notify',
          messages: [
            message({
              key: {
                remoteJid: '1203630@g.us',
                participant: LID,
                participantAlt: PN,
                id: 'G1',
                fromMe: false,
              },
              message: { extendedTextMessage: { text: 'group hi' } },
            }),
          ],
        },
      },
      AT,
    );
    expect(event?.type).toBe('MessageReceived');
    expect(event?.data).toMatchObject({
      chatJid: '1203630@g.us',
      senderJid: PN,
      isGroup: true,
      text: 'group hi',
    });
  });

  it('turns a message the account sent from its phone into MessageSent', () => {
    const [event] = translateBatch(
      {
        'messages.upsert': {
          type: 'notify',
          messages: [
            message({
              key: { remoteJid: PN, fromMe: true, id: 'S1' },
              message: { extendedTextMessage: { text: 'from the phone' } },
              status: proto.WebMessageInfo.Status.SERVER_ACK,
            }),
          ],
        },
      },
      AT,
    );
    expect(event).toMatchObject({
      type: 'MessageSent',
      data: {
        messageId: 'S1',
        chatJid: PN,
        text: 'from the phone',
        messageType: 'text',
        status: 'SERVER_ACK',
      },
    });
  });

  it('takes messages kept while the device was offline (append) from contacts, not our own sends or newsletters', () => {
    const events = translateBatch(
      {
        'messages.upsert': {
          type: 'append',
          messages: [
            message({
              key: { remoteJid: PN, fromMe: false, id: 'OFF1' },
              message: { conversation: 'while away' },
            }),
            message({
              key: { remoteJid: PN, fromMe: true, id: 'OWN1' },
              message: { conversation: 'we sent it' },
            }),
            message({ key: { remoteJid: '1@newsletter', id: 'NL1' }, message: { conversation: 'post' } }),
          ],
        },
      },
      AT,
    );
    expect(events.map((e) => [e.type, (e.data as { messageId?: string }).messageId])).toEqual([
      ['MessageReceived', 'OFF1'],
    ]);
  });

  it('ignores stubs and protocol messages', () => {
    expect(
      translateBatch(
        {
          'messages.upsert': {
            type: 'notify',
            messages: [
              message({
                key: { remoteJid: '1@g.us', id: 'ST' },
                messageStubType: WAMessageStubType.GROUP_PARTICIPANT_ADD,
              }),
              message({ key: { remoteJid: PN, id: 'P1' }, message: { protocolMessage: { type: 0 } } }),
            ],
          },
        },
        AT,
      ),
    ).toEqual([]);
  });
});

describe('the other traffic events', () => {
  it('messages.update: status, edit, delete', () => {
    const events = translateBatch(
      {
        'messages.update': [
          {
            key: { remoteJid: PN, id: 'A', fromMe: true },
            update: { status: proto.WebMessageInfo.Status.DELIVERY_ACK },
          },
          {
            key: { remoteJid: PN, id: 'B' },
            update: { message: { editedMessage: { message: { conversation: 'x' } } } },
          },
          {
            key: { remoteJid: PN, id: 'C' },
            update: { message: null, messageStubType: WAMessageStubType.REVOKE },
          },
          { key: { remoteJid: PN, id: 'D' }, update: { pollUpdates: [] } },
        ],
      },
      AT,
    );
    expect(events.map((e) => e.data)).toEqual([
      { at: AT, messageId: 'A', chatJid: PN, status: 'DELIVERY_ACK' },
      { at: AT, messageId: 'B', chatJid: PN, edited: true },
      { at: AT, messageId: 'C', chatJid: PN, deleted: true },
    ]);
    expect(events.every((e) => e.type === 'MessageUpdated')).toBe(true);
  });

  it('messages.reaction, including a removed reaction and our own', () => {
    const events = translateBatch(
      {
        'messages.reaction': [
          {
            key: { remoteJid: PN, id: 'M' },
            reaction: { key: { remoteJid: PN, fromMe: false }, text: '👍' },
          },
          { key: { remoteJid: PN, id: 'M' }, reaction: { key: { remoteJid: PN, fromMe: true }, text: '' } },
        ],
      },
      AT,
      '5511000000000@s.whatsapp.net',
    );
    expect(events).toEqual([
      { type: 'MessageReacted', data: { at: AT, messageId: 'M', chatJid: PN, senderJid: PN, emoji: '👍' } },
      {
        type: 'MessageReacted',
        data: { at: AT, messageId: 'M', chatJid: PN, senderJid: '5511000000000@s.whatsapp.net', emoji: '' },
      },
    ]);
  });

  it('groups, participants, presence, calls, contacts and labels', () => {
    const events = translateBatch(
      {
        'groups.update': [{ id: '1@g.us', subject: 'New name', announce: true }],
        'group-participants.update': {
          id: '1@g.us',
          author: PN,
          action: 'add',
          participants: [{ id: LID, phoneNumber: PN }, { id: '5511777777777@s.whatsapp.net' }],
        },
        'presence.update': { id: PN, presences: { [PN]: { lastKnownPresence: 'composing' } } },
        call: [
          {
            chatId: PN,
            from: PN,
            id: 'CALL1',
            date: new Date(),
            status: 'offer',
            offline: false,
            isVideo: true,
          },
        ],
        'contacts.upsert': [{ id: PN, name: 'Alice', notify: 'Ali' }],
        'contacts.update': [
          { id: PN, imgUrl: 'changed' },
          { id: LID, phoneNumber: PN, notify: 'A.' },
        ],
        'labels.edit': { id: '7', name: 'VIP', color: 3, deleted: false },
      },
      AT,
    );
    expect(events.map((e) => e.type)).toEqual([
      'GroupUpdated',
      'GroupParticipantsUpdated',
      'PresenceUpdated',
      'CallReceived',
      'ContactUpdated',
      'ContactUpdated',
      'LabelUpdated',
    ]);
    expect(events[0]?.data).toEqual({
      at: AT,
      groupJid: '1@g.us',
      changes: { subject: 'New name', announce: true },
    });
    expect(events[1]?.data).toEqual({
      at: AT,
      groupJid: '1@g.us',
      action: 'add',
      participants: [PN, '5511777777777@s.whatsapp.net'],
    });
    expect(events[2]?.data).toEqual({ at: AT, chatJid: PN, participantJid: PN, presence: 'composing' });
    expect(events[3]?.data).toEqual({
      at: AT,
      callId: 'CALL1',
      fromJid: PN,
      isVideo: true,
      status: 'offer',
      rejected: false,
    });
    expect(events[4]?.data).toEqual({ at: AT, jid: PN, name: 'Alice', notify: 'Ali' });
    expect(events[5]?.data).toEqual({ at: AT, jid: PN, name: null, notify: 'A.' });
    expect(events[6]?.data).toEqual({ at: AT, labelId: '7', name: 'VIP', color: 3, deleted: false });
  });

  it('leaves connection and credential events alone (they are signals, not traffic)', () => {
    expect(translateBatch({ ...({ 'connection.update': { connection: 'open' } } as object) }, AT)).toEqual(
      [],
    );
  });
});

describe('ignoreGroups / ignoreStatus', () => {
  const received = (chatJid: string) =>
    translateBatch(
      {
        'messages.upsert': {
          type: 'notify',
          messages: [
            message({
              key: { remoteJid: chatJid, participant: PN, id: 'X' },
              message: { conversation: 'x' },
            }),
          ],
        },
      },
      AT,
    )[0]!;

  it('drops group traffic only with ignoreGroups, status only with ignoreStatus', () => {
    const group = received('1@g.us');
    const status = received('status@broadcast');
    const direct = received(PN);
    const none = DEFAULT_ADVANCED_SETTINGS;
    expect([group, status, direct].map((e) => isIgnoredBySettings(e, none))).toEqual([false, false, false]);
    const groups = { ...none, ignoreGroups: true };
    expect([group, status, direct].map((e) => isIgnoredBySettings(e, groups))).toEqual([true, false, false]);
    const statuses = { ...none, ignoreStatus: true };
    expect([group, status, direct].map((e) => isIgnoredBySettings(e, statuses))).toEqual([
      false,
      true,
      false,
    ]);
  });
});
