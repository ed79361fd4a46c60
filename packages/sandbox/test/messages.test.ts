/**
 * Milestones 4–5: text both ways with real Signal encryption. A contact's phone sends to a linked
 * Baileys (which must decrypt it); Baileys sends to a contact (whose phone must decrypt it, while the
 * account's own phone gets the `deviceSentMessage` copy); receipts flow back both ways.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BaileysEventMap, WAMessage } from '@whiskeysockets/baileys';
import { startSandbox, type AccountInfo, type Sandbox } from '../src/index.ts';
import { connectBaileys, linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
let alice: AccountInfo;
let bob: AccountInfo;
let carol: AccountInfo;
let aliceDevice: BaileysClient;
let carolDevice: BaileysClient;
const clients: BaileysClient[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
  alice = sandbox.control.createAccount({ name: 'Alice' });
  bob = sandbox.control.createAccount({ name: 'Bob' });
  carol = sandbox.control.createAccount({ name: 'Carol' });
  [aliceDevice, carolDevice] = await Promise.all([
    linkDevice(sandbox, alice.phoneNumber),
    linkDevice(sandbox, carol.phoneNumber),
  ]);
  clients.push(aliceDevice, carolDevice);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await sandbox.close();
});

function upserted(client: BaileysClient, id: string, from = 0): Promise<WAMessage> {
  return client
    .waitFor('messages.upsert', (u) => u.messages.some((m) => m.key.id === id), { from })
    .then((u) => u.messages.find((m) => m.key.id === id)!);
}

/** The message's status as Baileys reports it: a `messages.update`, or folded into the own upsert. */
function statusReached(client: BaileysClient, id: string, status: number): Promise<unknown> {
  return Promise.race([
    client.waitFor('messages.update', (u) =>
      u.some((x) => x.key.id === id && (x.update.status ?? 0) >= status),
    ),
    client.waitFor('messages.upsert', (u: BaileysEventMap['messages.upsert']) =>
      u.messages.some((m) => m.key.id === id && (m.status ?? 0) >= status),
    ),
  ]);
}

describe('incoming: a contact phone sends to the linked device', () => {
  test('Baileys decrypts it (LID mapping via usync) and the phone gets the delivery receipt', async () => {
    const { id } = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'hello Alice');
    const message = await upserted(aliceDevice, id);
    expect(message.message?.conversation).toBe('hello Alice');
    expect(message.key).toMatchObject({
      remoteJid: bob.jid,
      remoteJidAlt: bob.lid,
      fromMe: false,
      addressingMode: 'pn',
    });
    expect(message.pushName).toBe('Bob');
    // Every device of Alice's acknowledges delivery: her phone and the linked Baileys.
    await expect
      .poll(() =>
        sandbox.control
          .receipts(bob.phoneNumber)
          .filter((r) => r.id === id)
          .map((r) => r.fromDevice)
          .sort(),
      )
      .toEqual([alice.jid, aliceDevice.sock.user?.id].sort());
    expect(
      sandbox.control.receipts(bob.phoneNumber).find((r) => r.fromDevice === aliceDevice.sock.user?.id),
    ).toMatchObject({
      from: alice.jid,
      type: 'inactive', // Baileys is not "online" (markOnlineOnConnect: false), so its receipts say inactive
    });
    // Alice's own phone is one of Alice's devices too: it decrypted its copy.
    expect(
      sandbox.control.received(alice.phoneNumber).some((m) => m.id === id && m.text === 'hello Alice'),
    ).toBe(true);
  });

  test('a conversation keeps its ratchet going (later messages are plain `msg`, not prekey messages)', async () => {
    for (let i = 0; i < 3; i++) {
      const { id } = await sandbox.control.sendText(bob.phoneNumber, alice.jid, `ping ${i}`);
      const message = await upserted(aliceDevice, id);
      expect(message.message?.conversation).toBe(`ping ${i}`);
      const sent = await aliceDevice.sock.sendMessage(bob.jid, { text: `pong ${i}` });
      const got = await sandbox.control.waitForMessage(bob.phoneNumber, { text: `pong ${i}` });
      expect(got.id).toBe(sent?.key.id);
    }
    const pongs = sandbox.control.received(bob.phoneNumber).filter((m) => m.text?.startsWith('pong'));
    expect(pongs.at(-1)?.cipher).toBe('msg');
  });

  test('a device that lost its session sends a retry receipt; the phone starts a new session and sends again', async () => {
    // The conversation is established (the tests above): the phone's next message is a plain `msg`.
    const before = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'before the loss');
    await upserted(aliceDevice, before.id);
    const from = aliceDevice.events.length;
    aliceDevice.auth.forget('session');
    const { id } = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'after the loss');
    // The first copy cannot be decrypted; the copy sent again after the retry receipt can.
    const upsert = await aliceDevice.waitFor(
      'messages.upsert',
      (u) => u.messages.some((m) => m.key.id === id && m.message?.conversation === 'after the loss'),
      { from },
    );
    expect(upsert.messages.find((m) => m.key.id === id)?.key.remoteJid).toBe(bob.jid);
    expect(aliceDevice.auth.count('session')).toBeGreaterThan(0);
    const next = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'and on');
    expect((await upserted(aliceDevice, next.id)).message?.conversation).toBe('and on');
  });

  test('LID addressing: the chat is the LID and the phone number comes alongside', async () => {
    const { id } = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'by lid', {
      addressing: 'lid',
    });
    const message = await upserted(aliceDevice, id);
    expect(message.message?.conversation).toBe('by lid');
    expect(message.key).toMatchObject({ remoteJid: bob.lid, remoteJidAlt: bob.jid, addressingMode: 'lid' });
  });

  test('a device that is offline gets the message from the offline queue after it logs back in', async () => {
    await aliceDevice.end();
    const { id } = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'while you were away');
    aliceDevice = connectBaileys(sandbox, { auth: aliceDevice.auth });
    clients.push(aliceDevice);
    await aliceDevice.opened();
    const message = await upserted(aliceDevice, id);
    expect(message.message?.conversation).toBe('while you were away');
    const upsert = await aliceDevice.waitFor('messages.upsert', (u) =>
      u.messages.some((m) => m.key.id === id),
    );
    expect(upsert.type).toBe('append'); // offline messages are history, not notifications
  });
});

describe('phones and lookups', () => {
  test("phones message each other; the recipient's linked device gets the message too", async () => {
    const { id } = await sandbox.control.sendText(bob.phoneNumber, carol.jid, 'phone to phone');
    const got = await sandbox.control.waitForMessage(carol.phoneNumber, { text: 'phone to phone' });
    expect(got).toMatchObject({ id, from: bob.jid, fromDevice: bob.jid, chat: bob.jid, fromMe: false });
    const onDevice = await upserted(carolDevice, id);
    expect(onDevice.message?.conversation).toBe('phone to phone');
    await expect
      .poll(() =>
        sandbox.control.receipts(bob.phoneNumber).some((r) => r.id === id && r.fromDevice === carol.jid),
      )
      .toBe(true);
  });

  test('onWhatsApp (usync contact protocol) knows the accounts and only them', async () => {
    const result = await aliceDevice.sock.onWhatsApp(bob.jid, '99000000000@s.whatsapp.net');
    expect(result).toEqual([{ jid: bob.jid, exists: true }]);
  });
});

describe('outgoing: the linked device sends to a contact', () => {
  test("the contact's phone reads it, Alice's phone gets the copy, the ticks come back", async () => {
    const sent = await aliceDevice.sock.sendMessage(bob.jid, { text: 'hi Bob' });
    const id = sent!.key.id!;
    const got = await sandbox.control.waitForMessage(bob.phoneNumber, { text: 'hi Bob' });
    expect(got).toMatchObject({
      id,
      from: alice.jid,
      fromDevice: aliceDevice.sock.user?.id,
      chat: alice.jid,
      fromMe: false,
    });
    // Baileys sends text as extendedTextMessage.
    expect(got.message).toHaveProperty('extendedTextMessage.text', 'hi Bob');
    const copy = sandbox.control.received(alice.phoneNumber).find((m) => m.id === id);
    expect(copy).toMatchObject({ fromMe: true, chat: bob.jid, text: 'hi Bob' });

    await statusReached(aliceDevice, id, 3); // DELIVERY_ACK from Bob's phone
    expect(sandbox.control.markRead(bob.phoneNumber, [id])).toBe(1);
    await statusReached(aliceDevice, id, 4); // READ
  });

  test('linked device to linked device: Carol reads what Alice typed, and Alice gets the receipt', async () => {
    const from = carolDevice.events.length;
    const sent = await aliceDevice.sock.sendMessage(carol.jid, { text: 'hi Carol' });
    const id = sent!.key.id!;
    const message = await upserted(carolDevice, id, from);
    expect(message.message?.extendedTextMessage?.text).toBe('hi Carol');
    expect(message.key).toMatchObject({ remoteJid: alice.jid, fromMe: false });
    await statusReached(aliceDevice, id, 3);
    // Carol's phone decrypted its own copy as well.
    await sandbox.control.waitForMessage(carol.phoneNumber, { text: 'hi Carol' });

    // Read receipts name the user (Baileys normalizes the chat first): Alice's phone and devices see them.
    await carolDevice.sock.readMessages([message.key]);
    await sandbox.control.waitForReceipt(alice.phoneNumber, id, { type: 'read' });
    await statusReached(aliceDevice, id, 4);
  });

  test("Baileys' read receipts for a phone's message reach that phone", async () => {
    const { id } = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'read me');
    const message = await upserted(aliceDevice, id);
    await aliceDevice.sock.readMessages([message.key]);
    const receipt = await sandbox.control.waitForReceipt(bob.phoneNumber, id, { type: 'read' });
    expect(receipt.from).toBe(alice.jid);
  });
});
