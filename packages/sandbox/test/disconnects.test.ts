/**
 * Milestone 6, disconnects: every way the server drops a linked device reaches Baileys with the
 * status code Baileys' `DisconnectReason` names, and the device can (or cannot) come back as it could
 * on WhatsApp.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startSandbox, type KickReason, type Sandbox } from '../src/index.ts';
import { connectBaileys, linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
const clients: BaileysClient[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true, closeGraceMs: 1000 });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await sandbox.close();
});

async function linked(name: string): Promise<{ account: string; client: BaileysClient }> {
  const { phoneNumber } = sandbox.control.createAccount({ name });
  const client = await linkDevice(sandbox, phoneNumber);
  clients.push(client);
  return { account: phoneNumber, client };
}

function reconnect(client: BaileysClient): BaileysClient {
  const next = connectBaileys(sandbox, { auth: client.auth });
  clients.push(next);
  return next;
}

describe('kicks that the device recovers from', () => {
  const cases: [KickReason, number][] = [
    ['connectionClosed', 428],
    ['restartRequired', 515],
    ['connectionReplaced', 440],
    ['badSession', 500],
    ['unavailableService', 503],
    ['multideviceMismatch', 411],
  ];
  test.each(cases)('%s reaches Baileys as %i and the device logs in again', async (reason, code) => {
    const { client } = await linked(`Kick ${reason}`);
    expect(sandbox.control.kick(client.sock.user!.id, reason)).toBe(true);
    expect(await client.closed()).toBe(code);
    await reconnect(client).opened();
  });

  test('the same credentials logging in twice replace the older socket (440)', async () => {
    const { account, client } = await linked('Twice');
    const device = client.sock.user!.id;
    const countsOf = () => sandbox.control.deviceConnections().find((d) => d.device === device);
    expect(countsOf()).toMatchObject({ online: true, logins: 1, replaced: 0 });
    const second = reconnect(client);
    await second.opened();
    expect(await client.closed()).toBe(440);
    expect(sandbox.control.devices(account)[0]?.online).toBe(true);
    // The moment with two sockets for one device is counted, and the control API shows it.
    expect(countsOf()).toMatchObject({ online: true, logins: 2, replaced: 1 });
    const overHttp = (await (await fetch(`${sandbox.controlUrl}/control/devices/connections`)).json()) as {
      device: string;
      replaced: number;
    }[];
    expect(overHttp.find((d) => d.device === device)?.replaced).toBe(1);
  });
});

test('the login log says when each login of a device began and ended, since a given moment', async () => {
  const since = Date.now();
  const { client } = await linked('Logged');
  const device = client.sock.user!.id.replace(/:\d+@/, '@');
  expect(sandbox.control.kick(client.sock.user!.id, 'restartRequired')).toBe(true);
  await client.closed();
  await reconnect(client).opened();
  const logins = (await (await fetch(`${sandbox.controlUrl}/control/logins?since=${since}`)).json()) as {
    device: string;
    openedAt: number;
    loggedInAt: number;
  }[];
  const own = logins.filter((l) => l.device.replace(/:\d+@/, '@') === device);
  expect(own).toHaveLength(2);
  for (const login of own) {
    expect(login.openedAt).toBeGreaterThanOrEqual(since);
    expect(login.loggedInAt).toBeGreaterThanOrEqual(login.openedAt);
  }
  expect(own[1]!.openedAt).toBeGreaterThanOrEqual(own[0]!.loggedInAt);
  expect((await fetch(`${sandbox.controlUrl}/control/logins?since=now`)).status).toBe(400);
});

describe('kicks that end the session', () => {
  test('loggedOut (device removed) reaches Baileys as 401, and the next login is refused with 401', async () => {
    const { account, client } = await linked('Removed');
    sandbox.control.kick(client.sock.user!.id, 'loggedOut');
    expect(await client.closed()).toBe(401);
    expect(sandbox.control.devices(account)).toHaveLength(0);
    expect(await reconnect(client).closed()).toBe(401);
  });

  test('forbidden reaches Baileys as 403; logins stay refused until the ban is lifted', async () => {
    const { account, client } = await linked('Banned');
    sandbox.control.kick(client.sock.user!.id, 'forbidden');
    expect(await client.closed()).toBe(403);
    expect(await reconnect(client).closed()).toBe(403);
    sandbox.control.unban(account);
    await reconnect(client).opened();
  });

  test('Baileys logging itself out unlinks the device', async () => {
    const { account, client } = await linked('Leaving');
    await client.sock.logout();
    expect(await client.closed()).toBe(401);
    await expect.poll(() => sandbox.control.devices(account)).toHaveLength(0);
    expect(await reconnect(client).closed()).toBe(401);
  });
});
