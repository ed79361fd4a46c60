/**
 * Sessions through HTTP with real Baileys on the sandbox: pairing code, disconnect then reconnect
 * without a QR, app restart back to open without a QR.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { startE2eApp, eventually, status, waitForQr, waitForState, type E2eApp } from './harness.ts';

let sandbox: Sandbox;
let app: E2eApp;

beforeAll(async () => {
  sandbox = await startSandbox();
  app = await startE2eApp({ server: sandbox });
});

afterAll(async () => {
  await app?.stop();
  await sandbox?.close();
});

async function createAndPairByQr(name: string, phoneNumber: string): Promise<string> {
  sandbox.control.createAccount({ phoneNumber, name });
  const created = await app.request<{ token: string }>('POST', '/instance/create', { body: { name } });
  expect(created.status).toBe(201);
  await app.request('POST', '/instance/connect', { body: { instanceName: name } });
  const qr = await waitForQr(app, name);
  await sandbox.control.scanQr(phoneNumber, qr.code);
  await waitForState(app, name, 'open');
  return created.body.token;
}

/** No QR shown on the instance's own connections since `since` (QR_CODE events are in its logs/history). */
async function qrCount(name: string): Promise<number> {
  const reply = await app.request<{ count?: number }>('GET', `/instance/qr?instanceName=${name}`);
  return reply.status === 200 ? (reply.body.count ?? 0) : 0;
}

describe('pairing code', () => {
  it('pairs with the 8-character code typed on the phone', async () => {
    const phone = sandbox.control.createAccount({ phoneNumber: '5511988880001', name: 'Code Phone' });
    expect((await app.request('POST', '/instance/create', { body: { name: 'bycode' } })).status).toBe(201);
    const reply = await app.request<{ pairingCode: string }>('POST', '/instance/pair', {
      body: { instanceName: 'bycode', phone: '+55 11 98888-0001' },
    });
    expect(reply.status).toBe(200);
    expect(reply.body.pairingCode).toMatch(/^[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    await sandbox.control.enterPairingCode(phone.phoneNumber, reply.body.pairingCode.replace('-', ''));
    const open = await waitForState(app, 'bycode', 'open');
    expect(open.jid).toBe('5511988880001@s.whatsapp.net');
    expect(sandbox.control.devices(phone.phoneNumber)).toHaveLength(1);
  });
});

describe('saved sessions', () => {
  it('disconnect keeps the session: reconnect opens again without a QR', async () => {
    await createAndPairByQr('keeper', '5511988880002');
    const devicesBefore = sandbox.control.devices('5511988880002');
    const disconnected = await app.request<{ state: string }>('POST', '/instance/disconnect', {
      body: { instanceName: 'keeper' },
    });
    expect(disconnected.status).toBe(200);
    await waitForState(app, 'keeper', 'disconnected');
    await eventually('the device goes offline', () => !sandbox.control.devices('5511988880002')[0]?.online);

    const waiting = sandbox.control.waitingForPairing();
    expect(
      (await app.request('POST', '/instance/reconnect', { body: { instanceName: 'keeper' } })).status,
    ).toBe(200);
    await waitForState(app, 'keeper', 'open');
    // Same linked device, logged in again; nobody was shown a QR.
    expect(sandbox.control.devices('5511988880002').map((d) => d.jid)).toEqual(
      devicesBefore.map((d) => d.jid),
    );
    expect(sandbox.control.waitingForPairing()).toBe(waiting);
    expect(await qrCount('keeper')).toBe(0);
  });

  it('an app restart brings paired instances back to open without a QR', async () => {
    const token = await createAndPairByQr('survivor', '5511988880003');
    const before = sandbox.control.devices('5511988880003').map((d) => d.jid);
    app = await app.restart();
    await waitForState(app, 'survivor', 'open', 20_000);
    await waitForState(app, 'keeper', 'open', 20_000);
    await waitForState(app, 'bycode', 'open', 20_000);
    expect(sandbox.control.devices('5511988880003').map((d) => d.jid)).toEqual(before);
    expect(sandbox.control.waitingForPairing()).toBe(0);

    // The restored session works: a text goes out and is decrypted by the contact.
    sandbox.control.createAccount({ phoneNumber: '5511977770003', name: 'Contact' });
    const sent = await app.request('POST', '/send/text', {
      apikey: token,
      body: { number: '5511977770003', text: 'after restart' },
    });
    expect(sent.status).toBe(200);
    const got = await sandbox.control.waitForMessage('5511977770003', { text: 'after restart' });
    expect(got.from).toBe('5511988880003@s.whatsapp.net');
    expect((await status(app, 'survivor')).loggedIn).toBe(true);
  });
});
