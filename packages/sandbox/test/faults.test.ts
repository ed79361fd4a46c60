/**
 * Fault modes over the HTTP control API, with raw Baileys linked: a muted device gets nothing until the
 * mute is lifted, a device whose pings are dropped gets no pong, a device with corrupted sessions cannot
 * decrypt its next messages; a companion's peer message to its own phone is answered with a peer_msg
 * receipt (what zapwire's delivery probe waits for).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startSandbox, type AccountInfo, type DeviceFaultView, type Sandbox } from '../src/index.ts';
import { linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
let owner: AccountInfo;
let contact: AccountInfo;
let client: BaileysClient;
let device: string;

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
  owner = sandbox.control.createAccount({ name: 'Owner' });
  contact = sandbox.control.createAccount({ name: 'Contact' });
  client = await linkDevice(sandbox, owner.phoneNumber);
  device = sandbox.control.devices(owner.phoneNumber)[0]!.jid;
});

afterAll(async () => {
  await client?.end().catch(() => undefined);
  await sandbox?.close();
});

async function call<T>(
  method: 'GET' | 'POST' | 'DELETE',
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

const faultsPath = (): string => `/control/devices/${encodeURIComponent(device)}/faults`;

function received(id: string): boolean {
  return client.events.some(
    (e) =>
      e.event === 'messages.upsert' &&
      (e.data as { messages: Array<{ key: { id?: string } }> }).messages.some((m) => m.key.id === id),
  );
}

test('a bad fault is a 400 that names the kinds', async () => {
  const bad = await call<{ error: string }>('POST', faultsPath(), { kind: 'explode' });
  expect(bad.status).toBe(400);
  expect(bad.json.error).toBe('kind must be one of mute, dropPings, corruptSessions');
  expect((await call('POST', faultsPath(), { kind: 'corruptSessions', messages: -1 })).status).toBe(400);
  expect((await call('POST', '/control/devices/1:9@s.whatsapp.net/faults', { kind: 'mute' })).status).toBe(
    404,
  );
});

test('mute: nothing is routed to the device until the mute is lifted, then what waited arrives', async () => {
  const set = await call<DeviceFaultView>('POST', faultsPath(), { kind: 'mute' });
  expect(set.status).toBe(200);
  expect(set.json.faults).toEqual([{ kind: 'mute', since: expect.any(String), untilReconnect: false }]);
  expect((await call<DeviceFaultView[]>('GET', '/control/faults')).json.map((f) => f.device)).toEqual([
    device,
  ]);

  const { id } = await sandbox.control.sendText(contact.phoneNumber, owner.phoneNumber, 'while muted');
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(received(id)).toBe(false);
  // Pings are still answered.
  await client.sock.query(
    {
      tag: 'iq',
      attrs: { to: 's.whatsapp.net', type: 'get', xmlns: 'w:p' },
      content: [{ tag: 'ping', attrs: {} }],
    },
    5_000,
  );

  const lifted = await call<DeviceFaultView>('DELETE', `${faultsPath()}?kind=mute`);
  expect(lifted.json.faults).toEqual([]);
  await client.waitFor('messages.upsert', (u) => u.messages.some((m) => m.key.id === id), {
    timeoutMs: 10_000,
  });
});

test('dropPings: the keepalive iq gets no answer; lifted, it does again', async () => {
  await call('POST', faultsPath(), { kind: 'dropPings' });
  const ping = (): Promise<unknown> =>
    client.sock.query(
      {
        tag: 'iq',
        attrs: { to: 's.whatsapp.net', type: 'get', xmlns: 'w:p' },
        content: [{ tag: 'ping', attrs: {} }],
      },
      1_500,
    );
  await expect(ping()).rejects.toThrow();
  await call('DELETE', faultsPath());
  await expect(ping()).resolves.toBeDefined();
});

test('corruptSessions: the next message fails to decrypt (a CIPHERTEXT stub), the count runs out by itself', async () => {
  const set = await call<DeviceFaultView>('POST', faultsPath(), { kind: 'corruptSessions', messages: 1 });
  expect(set.json.faults[0]).toMatchObject({ kind: 'corruptSessions', remaining: 1 });
  const { id } = await sandbox.control.sendText(contact.phoneNumber, owner.phoneNumber, 'damaged');
  const failed = await client.waitFor(
    'messages.upsert',
    (u) => u.messages.some((m) => m.key.id === id && m.messageStubType === 2),
    { timeoutMs: 10_000 },
  );
  expect(failed.messages[0]?.message ?? null).toBeNull();
  expect((await call<DeviceFaultView>('GET', faultsPath())).json.faults).toEqual([]);
});

test("a companion's peer message to its own phone comes back as a peer_msg receipt", async () => {
  const receipt = new Promise<{ attrs: Record<string, string> }>((resolve) =>
    client.sock.ws.on('CB:receipt', (node: { attrs: Record<string, string> }) => {
      if (node.attrs.type === 'peer_msg') resolve(node);
    }),
  );
  const own = client.sock.user!.id.replace(/:\d+@/, '@');
  const id = await client.sock.relayMessage(
    own,
    { protocolMessage: { type: 8, appStateSyncKeyRequest: { keyIds: [] } } },
    { additionalAttributes: { category: 'peer', push_priority: 'high_force' } },
  );
  const answered = await receipt;
  expect(answered.attrs).toMatchObject({ id, type: 'peer_msg', from: owner.jid });
});
