/**
 * Milestone 9, the small version (bench/sandbox runs 500): many linked devices at once. All of them
 * pair, stay connected, exchange a message each way, survive a server-side close of every socket at
 * once and log back in.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startSandbox, type AccountInfo, type Sandbox } from '../src/index.ts';
import { connectBaileys, linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

// Two batches of six links at once, and one re-login of all twelve at once: as concurrent as thirty were,
// at 40 % of the CPU (each link is a Signal and Noise handshake); numbers are bench/sandbox's job (500).
const DEVICES = 12;
const CONCURRENCY = 6;

let sandbox: Sandbox;
let contact: AccountInfo;
const accounts: AccountInfo[] = [];
let devices: BaileysClient[] = [];

async function inBatches<T, R>(
  items: T[],
  size: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...(await Promise.all(items.slice(i, i + size).map((item, j) => fn(item, i + j)))));
  }
  return out;
}

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
  contact = sandbox.control.createAccount({ name: 'Contact' });
  for (let i = 0; i < DEVICES; i++) accounts.push(sandbox.control.createAccount({ name: `Load ${i}` }));
});

afterAll(async () => {
  await Promise.all(devices.map((d) => d.end().catch(() => undefined)));
  await sandbox.close();
});

test(`${DEVICES} devices linked and connected at once`, { timeout: 90_000 }, async () => {
  devices = await inBatches(accounts, CONCURRENCY, (account) => linkDevice(sandbox, account.phoneNumber));
  expect(sandbox.control.stats()).toMatchObject({
    devices: DEVICES,
    devicesOnline: DEVICES,
    connections: DEVICES,
  });

  // Every device gets a message from the contact's phone and answers it.
  const sent = await Promise.all(
    accounts.map((a, i) => sandbox.control.sendText(contact.phoneNumber, a.jid, `hello ${i}`)),
  );
  await Promise.all(
    devices.map((d, i) =>
      d.waitFor('messages.upsert', (u) => u.messages.some((m) => m.key.id === sent[i]!.id)),
    ),
  );
  await Promise.all(devices.map((d, i) => d.sock.sendMessage(contact.jid, { text: `answer ${i}` })));
  await Promise.all(
    accounts.map((_, i) => sandbox.control.waitForMessage(contact.phoneNumber, { text: `answer ${i}` })),
  );

  // The server closes every socket at once (428); every device logs back in.
  const closed = devices.map((d) => d.closed());
  for (const account of accounts)
    sandbox.control.kick(
      account.devices[0]?.jid ?? `${account.phoneNumber}:1@s.whatsapp.net`,
      'connectionClosed',
    );
  expect(await Promise.all(closed)).toEqual(accounts.map(() => 428));
  devices = await inBatches(devices, CONCURRENCY * 2, async (d) => {
    const again = connectBaileys(sandbox, { auth: d.auth });
    await again.opened(20_000);
    return again;
  });
  expect(sandbox.control.stats().devicesOnline).toBe(DEVICES);
});
