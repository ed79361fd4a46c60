/**
 * Evolution GO's manager, as HTTP calls, against zapwire with API_COMPAT=evolution-go, real Baileys and
 * the sandbox: sign in (server check, licence check, instance list), create, connect, show the QR, pair
 * with a code typed on the phone, watch the status turn to logged in, delete. Every call reads what the
 * manager reads (`data.data.Qrcode`, `data.data.PairingCode`, `data.data.LoggedIn`, the instance's
 * `token` as the key for per-instance calls).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { eventually, findEverywhere, startE2eApp, type E2eApp } from './harness.ts';

let sandbox: Sandbox;
let app: E2eApp;

beforeAll(async () => {
  sandbox = await startSandbox();
  app = await startE2eApp({ server: sandbox, env: { API_COMPAT: 'evolution-go' } });
});

afterAll(async () => {
  await app?.stop();
  await sandbox?.close();
});

type Body = Record<string, unknown>;
const dataOf = (body: unknown): Body => (body as { data: Body }).data;

describe("Evolution GO's manager against zapwire", () => {
  it('login, create, connect, QR, pairing code, status, delete', async () => {
    const phone = sandbox.control.createAccount({ phoneNumber: '5511977770001', name: 'Loja' });

    // Login: the manager checks the server, the licence, then lists the instances with the admin key.
    expect((await app.request('GET', '/server/ok', { apikey: null })).body).toEqual({ status: 'ok' });
    expect((await app.request('GET', '/license/status', { apikey: null })).body).toEqual({
      status: 'active',
    });
    const before = await app.request('GET', '/instance/all');
    expect(before.body).toEqual({ message: 'success', data: [] });

    // Create: any name, the token the user typed.
    const created = await app.request('POST', '/instance/create', {
      body: { name: 'Loja Centro', token: 'loja-centro-token' },
    });
    expect(created.status).toBe(200);
    const id = dataOf(created.body)['id'] as string;

    // The manager takes the token from the list and uses it for every per-instance call.
    const listed = (await app.request('GET', '/instance/all')).body as { data: Body[] };
    const token = listed.data.find((i) => i['id'] === id)!['token'] as string;
    expect(token).toBe('loja-centro-token');

    // Connect with the manager's empty settings.
    const connect = await app.request('POST', '/instance/connect', {
      apikey: token,
      body: { webhookUrl: '', subscribe: [], rabbitmqEnable: '', websocketEnable: '', natsEnable: '' },
    });
    expect(connect.body).toEqual({
      message: 'success',
      data: { jid: '', webhookUrl: '', eventString: 'MESSAGE' },
    });

    // QR: polled until WhatsApp shows one.
    const qr = await eventually('a QR code', async () => {
      const r = await app.request('GET', '/instance/qr', { apikey: token });
      return r.status === 200 ? dataOf(r.body) : undefined;
    });
    expect(qr['Qrcode']).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/=]+$/);
    // Baileys 7 gives the QR's text as WhatsApp's linking URL around the classic "2@…" reference.
    expect(qr['Code']).toMatch(/^(https:\/\/wa\.me\/settings\/linked_devices#)?2@/);
    const card = dataOf((await app.request('GET', `/instance/info/${id}`)).body);
    expect((card['qrcode'] as string).split('|')).toEqual([qr['Qrcode'], qr['Code']]);

    // Pair with a code instead: the phone types it.
    const pair = await app.request('POST', '/instance/pair', {
      apikey: token,
      body: { phone: `+${phone.phoneNumber}` },
    });
    expect(pair.status).toBe(200);
    const code = dataOf(pair.body)['PairingCode'] as string;
    expect(code).toMatch(/^[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    await sandbox.control.enterPairingCode(phone.phoneNumber, code);

    // Status until logged in.
    const status = await eventually(
      'logged in',
      async () => {
        const r = await app.request('GET', '/instance/status', { apikey: token });
        const data = dataOf(r.body);
        return data['LoggedIn'] === true ? data : undefined;
      },
      30_000,
    );
    expect(status).toEqual({ Connected: true, LoggedIn: true, Name: expect.any(String) as unknown });
    const open = dataOf((await app.request('GET', `/instance/info/${id}`)).body);
    expect(open).toMatchObject({ connected: true, jid: `${phone.phoneNumber}@s.whatsapp.net`, qrcode: '' });

    // The token is kept sealed: no table holds it in clear.
    expect(await findEverywhere(app, token)).toEqual([]);

    // Delete.
    expect((await app.request('DELETE', `/instance/delete/${id}`)).body).toEqual({ message: 'success' });
    expect((await app.request('GET', '/instance/all')).body).toEqual({ message: 'success', data: [] });
    expect((await app.request('GET', '/instance/status', { apikey: token })).body).toEqual({
      error: 'not authorized',
    });
  });
});
