/**
 * The sandbox's send faults (src/sandbox/send-faults.ts) with real Baileys: what a recipient's phone sees
 * when the same message id arrives twice (once, as WhatsApp's clients show it), and a restricted account
 * whose messages the server refuses in their ack, as Baileys surfaces it (`messages.update` ERROR with the
 * error code, Socket/messages-recv.js handleBadAck).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startSandbox, type AccountInfo, type Sandbox } from '../../../src/sandbox/index.ts';
import { linkDevice, type BaileysClient } from '../../support/baileys-sandbox.ts';

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
  test('its message is refused in the ack (error 463) and reaches no one; the restriction lifts after its count', async () => {
    sandbox.control.restrictSending(alice.phoneNumber, { code: '463', count: 1 });
    expect(sandbox.control.sendingRestriction(alice.phoneNumber)).toMatchObject({
      code: '463',
      remaining: 1,
    });
    const from = aliceDevice.events.length;
    const refused = await aliceDevice.sock.sendMessage(bob.jid, { text: 'reaching out' });
    const update = await aliceDevice.waitFor(
      'messages.update',
      (u) => u.some((x) => x.key.id === refused?.key.id && x.update.messageStubParameters?.[0] === '463'),
      { from },
    );
    expect(update.find((x) => x.key.id === refused?.key.id)?.update.status).toBe(0); // WAMessageStatus.ERROR
    const delivered = await aliceDevice.sock.sendMessage(bob.jid, { text: 'after the restriction' });
    await sandbox.control.waitForMessage(bob.phoneNumber, { text: 'after the restriction' });
    expect(delivered?.key.id).toBeTruthy();
    expect(sandbox.control.received(bob.phoneNumber).some((m) => m.text === 'reaching out')).toBe(false);
    expect(sandbox.control.sendingRestriction(alice.phoneNumber)).toBeNull();
  });
});
