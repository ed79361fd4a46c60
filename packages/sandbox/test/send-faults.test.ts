/**
 * The sandbox's send faults (src/send-faults.ts) with real Baileys: what a recipient's phone sees
 * when the same message id arrives twice (once, as WhatsApp's clients show it), and a restricted account
 * whose messages the server refuses in their ack (`<ack class="message" error="463">`, which Baileys' own
 * handleBadAck and zapwire's adapter read).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startSandbox, type AccountInfo, type Sandbox } from '../src/index.ts';
import { linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
let alice: AccountInfo;
let bob: AccountInfo;
let aliceDevice: BaileysClient;

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
  alice = sandbox.control.createAccount({ name: 'Alice' });
  bob = sandbox.control.createAccount({ name: 'Bob' });
  aliceDevice = await linkDevice(sandbox, alice.phoneNumber);
});

afterAll(async () => {
  await aliceDevice?.end().catch(() => undefined);
  await sandbox?.close();
});

describe('the same message id twice', () => {
  test("the recipient's phone shows it once, and the sandbox counts the repeat", async () => {
    const messageId = '3EB0AAAABBBBCCCCDDDDEE';
    await aliceDevice.sock.sendMessage(bob.jid, { text: 'only once please' }, { messageId });
    await sandbox.control.waitForMessage(bob.phoneNumber, { text: 'only once please' });
    // Sent again after "a crash": a new Signal ciphertext, the same id.
    await aliceDevice.sock.sendMessage(bob.jid, { text: 'only once please' }, { messageId });
    await expect.poll(() => sandbox.control.repeats(bob.phoneNumber).map((r) => r.repeats)).toEqual([1]);
    expect(sandbox.control.repeats(bob.phoneNumber)[0]).toMatchObject({ id: messageId, from: alice.jid });
    expect(sandbox.control.received(bob.phoneNumber).filter((m) => m.id === messageId)).toHaveLength(1);
    // Another id with the same text is another message.
    await aliceDevice.sock.sendMessage(bob.jid, { text: 'only once please' });
    await expect
      .poll(
        () => sandbox.control.received(bob.phoneNumber).filter((m) => m.text === 'only once please').length,
      )
      .toBe(2);
  });
});

describe('a restricted account', () => {
  test('its message is refused in the server ack (error 463) and reaches no one; the restriction lifts after its count', async () => {
    sandbox.control.restrictSending(alice.phoneNumber, { code: '463', count: 1 });
    expect(sandbox.control.sendingRestriction(alice.phoneNumber)).toMatchObject({
      code: '463',
      remaining: 1,
    });
    // What zapwire's adapter listens to (src/whatsapp/baileys/server-acks.ts): the server's ack, by id.
    const acks: Array<Record<string, string>> = [];
    const ws = aliceDevice.sock.ws as unknown as {
      on(event: string, listener: (node: { attrs: Record<string, string> }) => void): void;
    };
    ws.on('CB:ack,class:message', (node) => acks.push(node.attrs));
    const refused = await aliceDevice.sock.sendMessage(bob.jid, { text: 'reaching out' });
    await expect.poll(() => acks.find((a) => a.id === refused?.key.id)).toMatchObject({ error: '463' });
    const delivered = await aliceDevice.sock.sendMessage(bob.jid, { text: 'after the restriction' });
    await sandbox.control.waitForMessage(bob.phoneNumber, { text: 'after the restriction' });
    await expect.poll(() => acks.find((a) => a.id === delivered?.key.id)).toBeDefined();
    expect(acks.find((a) => a.id === delivered?.key.id)?.error).toBeUndefined();
    expect(sandbox.control.received(bob.phoneNumber).some((m) => m.text === 'reaching out')).toBe(false);
    expect(sandbox.control.sendingRestriction(alice.phoneNumber)).toBeNull();
    expect(sandbox.control.restrictSending(alice.phoneNumber, { code: '429', durationMs: 1 }).code).toBe(
      '429',
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(sandbox.control.sendingRestriction(alice.phoneNumber)).toBeNull();
  });
});
