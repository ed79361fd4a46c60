/**
 * Milestone 7: the inline history sync a phone pushes after a device's first login. It carries the
 * phone's recent chats and LID mappings, and it is what lets Baileys (default history settings) stop
 * holding events back after a first login instead of waiting 20 s for it.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startSandbox, type Sandbox } from '../src/index.ts';
import { linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
let device: BaileysClient | undefined;

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
});

afterAll(async () => {
  await device?.end().catch(() => undefined);
  await sandbox.close();
});

test("a first login gets the phone's recent chats, then live messages flow without the 20 s hold", async () => {
  const alice = sandbox.control.createAccount({ name: 'Alice' });
  const bob = sandbox.control.createAccount({ name: 'Bob' });
  const before = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'sent before the device existed');
  const reply = await sandbox.control.sendText(alice.phoneNumber, bob.jid, 'answered from the phone');

  device = await linkDevice(sandbox, alice.phoneNumber);
  const history = await device.waitFor('messaging-history.set', () => true);
  expect(history.syncType).toBe(0); // INITIAL_BOOTSTRAP
  expect(history.chats.map((c) => c.id)).toContain(bob.jid);
  expect(history.messages.map((m) => m.key.id).sort()).toEqual([before.id, reply.id].sort());
  const old = history.messages.find((m) => m.key.id === before.id);
  expect(old?.message?.conversation).toBe('sent before the device existed');
  expect(history.messages.find((m) => m.key.id === reply.id)?.key.fromMe).toBe(true);
  expect(history.contacts).toContainEqual(
    expect.objectContaining({ id: bob.jid, name: 'Bob', lid: bob.lid }),
  );
  // The event buffer drops lidPnMappings from the event, but Baileys stored the mapping from it.
  const stored = await device.auth.state.keys.get('lid-mapping', [bob.phoneNumber]);
  expect(stored[bob.phoneNumber]).toBe(bob.lid.split('@')[0]);
  await device.waitFor('creds.update', (u) => u.accountSyncCounter === 1);

  const started = Date.now();
  const live = await sandbox.control.sendText(bob.phoneNumber, alice.jid, 'live');
  await device.waitFor('messages.upsert', (u) => u.messages.some((m) => m.key.id === live.id));
  expect(Date.now() - started).toBeLessThan(3_000);
});
