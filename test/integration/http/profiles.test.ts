/**
 * The default profile (API_COMPAT unset) keeps zapwire's own shapes on every route of Evolution GO's
 * contract: 201 on create, bare objects, lower-case fields, `{error: {code, message}}`, no CORS headers,
 * no /server/ok. The evolution-go profile's shapes are in evolution-go.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { RECONNECT_RATE_LIMIT_MS: '0' } });
});
afterAll(async () => {
  await t?.stop();
});

type Body = Record<string, unknown>;
const codeOf = (body: Body): string => (body['error'] as { code: string }).code;

describe('the default profile on the routes of the Evolution GO contract', () => {
  it('answers in zapwire shapes, route by route', async () => {
    const created = await t.request('POST', '/instance/create', {
      body: { name: 'padrao', token: 'padrao-token-123' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'padrao', token: 'padrao-token-123', state: 'created' });
    expect(created.body).not.toHaveProperty('message');
    const id = created.body['id'] as string;
    const token = 'padrao-token-123';

    const all = await t.request<Body[]>('GET', '/instance/all');
    expect(Array.isArray(all.body)).toBe(true);
    expect(all.body[0]).not.toHaveProperty('token');
    expect(all.body[0]!['events']).toEqual(['MESSAGE']);

    const info = await t.request('GET', `/instance/info/${id}`);
    expect(info.body).toMatchObject({ id, name: 'padrao', state: 'created', rabbitmqEnable: false });

    const connect = await t.request('POST', '/instance/connect', { apikey: token, body: {} });
    expect(connect.body).toMatchObject({ id, state: 'connecting' });
    const connection = await eventually(() => t.fake.connection(id));
    connection.issueQr();
    const qr = await eventually(async () => {
      const r = await t.request('GET', '/instance/qr', { apikey: token });
      return r.status === 200 ? r.body : undefined;
    });
    expect(qr['qrcode']).toMatch(/^data:image\/png;base64,.+\|fake-qr-/);
    expect(qr).not.toHaveProperty('Qrcode');

    const pair = await t.request('POST', '/instance/pair', {
      apikey: token,
      body: { phone: '5511999990000' },
    });
    expect(pair.body).toEqual({ pairingCode: expect.stringMatching(/^\w{4}-\w{4}$/) as unknown });

    connection.scan();
    const status = await eventually(async () => {
      const r = await t.request('GET', '/instance/status', { apikey: token });
      return r.body['state'] === 'open' ? r.body : undefined;
    });
    expect(status).toMatchObject({ id, instanceName: 'padrao', connected: true, loggedIn: true });
    expect(status).not.toHaveProperty('Connected');

    const sent = await t.request('POST', '/send/text', {
      apikey: token,
      body: { number: '5511988887777', text: 'oi' },
    });
    expect(sent.body).toMatchObject({
      id: expect.any(String) as unknown,
      to: '5511988887777@s.whatsapp.net',
    });

    for (const path of ['/instance/disconnect', '/instance/reconnect']) {
      const r = await t.request('POST', path, { apikey: token });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ id, state: expect.any(String) as unknown });
    }
    await eventually(
      async () => (await t.request('GET', '/instance/status', { apikey: token })).body['loggedIn'],
    );
    const force = await t.request('POST', `/instance/forcereconnect/${id}`, { body: {} });
    expect(force.status).toBe(200);
    expect(force.body).toMatchObject({ id, state: expect.any(String) as unknown });

    const settings = await t.request('GET', `/instance/${id}/advanced-settings`, { apikey: token });
    expect(settings.body).toMatchObject({ alwaysOnline: false });
    const put = await t.request('PUT', `/instance/${id}/advanced-settings`, {
      apikey: token,
      body: { alwaysOnline: true },
    });
    expect(put.body).toMatchObject({ alwaysOnline: true });
    expect(put.body).not.toHaveProperty('settings');
    const empty = await t.request('PUT', `/instance/${id}/advanced-settings`, { apikey: token, body: {} });
    expect(empty.status).toBe(400);

    const proxy = await t.request('POST', `/instance/proxy/${id}`, {
      body: { host: 'p.example', port: 8080 },
    });
    expect(proxy.body).toMatchObject({ proxy: { host: 'p.example', port: 8080 } });
    expect((await t.request('DELETE', `/instance/proxy/${id}`)).body).toMatchObject({ proxy: null });

    const logs = await t.request<Body[]>('GET', `/instance/logs/${id}`);
    expect(logs.body[0]).toHaveProperty('at');
    expect(logs.body[0]).not.toHaveProperty('instance_id');

    const logout = await t.request('DELETE', '/instance/logout', { apikey: token });
    expect(logout.body).toMatchObject({ id, state: 'disconnected' });
    expect((await t.request('DELETE', `/instance/delete/${id}`)).body).toEqual({
      id,
      name: 'padrao',
      deleted: true,
    });
  });

  it('keeps its errors, has no /server/ok and sends no CORS headers', async () => {
    const wrong = await t.request('GET', '/instance/all', { apikey: 'wrong-key-wrong-key' });
    expect(wrong.status).toBe(401);
    expect(codeOf(wrong.body)).toBe('ZW_ERR_UNAUTHORIZED');
    const ok = await t.request('GET', '/server/ok', { apikey: ADMIN_KEY });
    expect(ok.status).toBe(404);
    expect(codeOf(ok.body)).toBe('ZW_ERR_ROUTE_NOT_FOUND');
    expect(ok.headers['access-control-allow-origin']).toBeUndefined();
    const name = await t.request('POST', '/instance/create', {
      body: { name: 'com espaço', token: 'com-espaco-token-0123' },
    });
    expect(name.status).toBe(400);
    expect(codeOf(name.body)).toBe('ZW_ERR_VALIDATION');
  });
});
