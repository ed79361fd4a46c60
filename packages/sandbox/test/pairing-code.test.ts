/**
 * Milestone 3: pairing by code. Baileys asks for a code, the simulated phone's user "types" it, and
 * the two sides derive the ADV secret through the wrapped ephemeral keys; a wrong code links nothing.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startSandbox, type Sandbox } from '../src/index.ts';
import { connectBaileys, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
const clients: BaileysClient[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await sandbox.close();
});

test('a wrong code links nothing; the right one links the device, which restarts (515) and logs in', async () => {
  const dana = sandbox.control.createAccount({ name: 'Dana' });
  const pairing = connectBaileys(sandbox);
  clients.push(pairing);
  await pairing.qr(); // the socket is registered and waiting
  const code = await pairing.sock.requestPairingCode(dana.phoneNumber);
  expect(code).toMatch(/^[0-9A-Z]{8}$/);

  const wrong = code === 'AAAAAAAA' ? 'BBBBBBBB' : 'AAAAAAAA';
  await expect(sandbox.control.enterPairingCode(dana.phoneNumber, wrong)).rejects.toMatchObject({
    status: 401,
  });
  expect(sandbox.control.devices(dana.phoneNumber)).toHaveLength(0);
  expect(
    pairing.events.some(
      (e) => e.event === 'connection.update' && 'connection' in e.data && e.data.connection === 'close',
    ),
  ).toBe(false);

  const device = await sandbox.control.enterPairingCode(dana.phoneNumber, code);
  expect(device.jid).toBe(`${dana.phoneNumber}:1@s.whatsapp.net`);
  await pairing.waitFor('connection.update', (u) => u.isNewLogin === true);
  expect(await pairing.closed()).toBe(515);
  expect(pairing.auth.state.creds.registered).toBe(true);
  expect(pairing.auth.state.creds.me?.id).toBe(device.jid);

  const client = connectBaileys(sandbox, { auth: pairing.auth });
  clients.push(client);
  await client.opened();
  expect(sandbox.control.devices(dana.phoneNumber)[0]?.online).toBe(true);
});

test('entering a code nobody asked for is refused', { timeout: 10_000 }, async () => {
  const erin = sandbox.control.createAccount();
  await expect(sandbox.control.enterPairingCode(erin.phoneNumber, 'ABCD1234')).rejects.toMatchObject({
    status: 404,
  });
});
