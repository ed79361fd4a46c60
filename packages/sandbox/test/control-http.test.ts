/**
 * Milestone 8: the HTTP control API (the same operations as the in-process control, over loopback
 * JSON), driven while raw Baileys is connected.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import {
  startSandbox,
  type AccountInfo,
  type DeviceInfo,
  type PhoneMessage,
  type Sandbox,
} from '../src/index.ts';
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

async function call<T>(
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: T }> {
  const res = await fetch(`${sandbox.controlUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

test('the index tells a client where to connect and what to trust', async () => {
  const { status, json } = await call<Record<string, unknown>>('GET', '/control');
  expect(status).toBe(200);
  expect(json).toMatchObject({
    wsUrl: sandbox.wsUrl,
    rootPublicKeyBase64: sandbox.rootPublicKeyBase64,
    env: { WA_WEBSOCKET_URL: sandbox.wsUrl, WA_NOISE_ROOT_PUBLIC_KEY: sandbox.rootPublicKeyBase64 },
  });
  expect(sandbox.wsUrl.startsWith('ws://127.0.0.1:')).toBe(true);
});

test('pair, chat, call and kick a device entirely over HTTP', async () => {
  const created = await call<AccountInfo>('POST', '/control/accounts', {
    phoneNumber: '+99 11 5550 0001',
    name: 'Hana',
  });
  expect(created.status).toBe(200);
  expect(created.json).toMatchObject({
    phoneNumber: '991155500001',
    jid: '991155500001@s.whatsapp.net',
    name: 'Hana',
  });
  expect((await call('POST', '/control/accounts', { phoneNumber: '991155500001' })).status).toBe(409);
  const { json: ivan } = await call<AccountInfo>('POST', '/control/accounts', { name: 'Ivan' });

  const pairing = connectBaileys(sandbox);
  clients.push(pairing);
  const scanned = await call<DeviceInfo>('POST', `/control/accounts/${created.json.phoneNumber}/scan-qr`, {
    qr: await pairing.qr(),
  });
  expect(scanned.status).toBe(200);
  expect(await pairing.closed()).toBe(515);
  const device = connectBaileys(sandbox, { auth: pairing.auth });
  clients.push(device);
  await device.opened();
  const { json: account } = await call<AccountInfo>(
    'GET',
    `/control/accounts/${encodeURIComponent(created.json.jid)}`,
  );
  expect(account.devices).toEqual([expect.objectContaining({ jid: scanned.json.jid, online: true })]);

  const sent = await call<{ id: string }>('POST', `/control/accounts/${ivan.phoneNumber}/messages`, {
    to: created.json.jid,
    text: 'from curl',
  });
  const upsert = await device.waitFor('messages.upsert', (u) =>
    u.messages.some((m) => m.key.id === sent.json.id),
  );
  expect(upsert.messages[0]?.message?.conversation).toBe('from curl');

  await device.sock.sendMessage(ivan.jid, { text: 'back to curl' });
  const waited = await call<PhoneMessage[]>(
    'GET',
    `/control/accounts/${ivan.phoneNumber}/messages?wait=5000&text=back%20to%20curl`,
  );
  expect(waited.json[0]).toMatchObject({ text: 'back to curl', from: created.json.jid });

  const ring = await call<{ callId: string }>('POST', `/control/accounts/${ivan.phoneNumber}/calls`, {
    to: created.json.jid,
  });
  await device.waitFor('call', (calls) => calls.some((c) => c.id === ring.json.callId));

  const kicked = await call<{ online: boolean }>(
    'POST',
    `/control/devices/${encodeURIComponent(scanned.json.jid)}/kick`,
    {
      reason: 'connectionClosed',
    },
  );
  expect(kicked.json.online).toBe(true);
  expect(await device.closed()).toBe(428);
});

test('errors come back as JSON with a status', async () => {
  expect(await call('GET', '/control/nope')).toMatchObject({ status: 404 });
  expect(await call('GET', '/control/accounts/123')).toMatchObject({
    status: 404,
    json: { error: 'no account 123' },
  });
  expect(await call('POST', '/control/groups', { owner: 'x' })).toMatchObject({ status: 400 });
  const res = await fetch(`${sandbox.controlUrl}/control/accounts`, { method: 'POST', body: 'not json' });
  expect(res.status).toBe(400);
});
