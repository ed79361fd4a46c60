/**
 * API_COMPAT=evolution-go: every route of Evolution GO's instance contract, through HTTP, with the fake
 * WhatsApp side: the `{"message":"success","data":…}` wrapper and its exceptions, PascalCase where
 * Evolution GO's structs have no JSON tags, the flat instance JSON, `{"error":…}` errors, the key rules,
 * lenient input, and Evolution GO 0.7's advanced-settings handler cases.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { API_COMPAT: 'evolution-go', RECONNECT_RATE_LIMIT_MS: '0' } });
});
afterAll(async () => {
  await t?.stop();
});

type Body = Record<string, unknown>;
const dataOf = (body: Body): Body => body['data'] as Body;

let serial = 0;
async function create(extra: Body = {}): Promise<{ id: string; name: string; token: string; data: Body }> {
  serial += 1;
  const name = `Loja ${serial}`;
  const token = `tok-${serial}-${randomUUID()}`;
  const r = await t.request('POST', '/instance/create', { body: { name, token, ...extra } });
  expect(r.status).toBe(200);
  expect(r.body['message']).toBe('success');
  const data = dataOf(r.body);
  return { id: data['id'] as string, name, token, data };
}

async function connectAndShowQr(i: { id: string; token: string }): Promise<void> {
  const r = await t.request('POST', '/instance/connect', {
    apikey: i.token,
    body: { webhookUrl: '', subscribe: [], rabbitmqEnable: '', websocketEnable: '', natsEnable: '' },
  });
  expect(r.status).toBe(200);
  const connection = await eventually(() => t.fake.connection(i.id));
  connection.issueQr();
  await eventually(async () => {
    const qr = await t.request('GET', '/instance/qr', { apikey: i.token });
    return qr.status === 200;
  });
}

async function openPaired(i: { id: string; token: string }): Promise<void> {
  await connectAndShowQr(i);
  t.fake.live(i.id).scan();
  await eventually(async () => {
    const s = await t.request('GET', '/instance/status', { apikey: i.token });
    return dataOf(s.body)['LoggedIn'] === true;
  });
}

const INSTANCE_FIELDS = [
  'id',
  'name',
  'token',
  'webhook',
  'rabbitmqEnable',
  'websocketEnable',
  'natsEnable',
  'jid',
  'qrcode',
  'connected',
  'expiration',
  'disconnect_reason',
  'events',
  'os_name',
  'proxy',
  'client_name',
  'createdAt',
  'alwaysOnline',
  'rejectCall',
  'msgRejectCall',
  'readMessages',
  'ignoreGroups',
  'ignoreStatus',
].sort();

describe('server and CORS', () => {
  it('GET /server/ok and /license/status answer what the manager checks at login, without a key', async () => {
    expect(await t.request('GET', '/server/ok', { apikey: null })).toMatchObject({
      status: 200,
      body: { status: 'ok' },
    });
    expect(await t.request('GET', '/license/status', { apikey: null })).toMatchObject({
      status: 200,
      body: { status: 'active' },
    });
  });

  it('allows any origin by default and answers every preflight with 200', async () => {
    const r = await t.zapwire.app.inject({
      method: 'OPTIONS',
      url: '/instance/anything',
      headers: { origin: 'https://manager.example', 'access-control-request-method': 'POST' },
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe('*');
    expect(String(r.headers['access-control-allow-headers'])).toContain('apikey');
    const get = await t.request('GET', '/server/ok');
    expect(get.headers['access-control-allow-origin']).toBe('*');
  });

  it('allows every request header Evolution GO allows: its manager sends Cache-Control (issue #22)', async () => {
    // As Evolution GO's CORS middleware spells it.
    const evolutionGo =
      'Origin, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization, Accept, Cache-Control, X-Requested-With, apikey, ApiKey'.split(
        ', ',
      );
    const r = await t.zapwire.app.inject({
      method: 'OPTIONS',
      url: '/instance/all',
      headers: {
        origin: 'https://manager.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'apikey,cache-control',
      },
    });
    expect(r.statusCode).toBe(200);
    const allowed = String(r.headers['access-control-allow-headers'])
      .split(',')
      .map((h) => h.trim().toLowerCase());
    for (const header of evolutionGo) expect(allowed, header).toContain(header.toLowerCase());
  });

  it('an unknown route is a 404 with an error field', async () => {
    const r = await t.request('GET', '/nope');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: '404 page not found' });
  });
});

describe('keys', () => {
  it('401 not authorized for a missing or wrong key, an instance token on admin routes, the global key on instance routes', async () => {
    const i = await create();
    const cases: Array<[string, string, string | null, unknown?]> = [
      ['GET', '/instance/all', null],
      ['GET', '/instance/all', 'wrong'],
      ['GET', '/instance/all', i.token],
      ['POST', '/instance/create', i.token, { name: 'x', token: 'y' }],
      ['GET', `/instance/info/${i.id}`, i.token],
      ['DELETE', `/instance/delete/${i.id}`, i.token],
      ['GET', `/instance/logs/${i.id}`, i.token],
      ['POST', `/instance/proxy/${i.id}`, i.token, { host: 'h', port: '1' }],
      ['POST', `/instance/forcereconnect/${i.id}`, i.token, { number: '1' }],
      ['GET', '/instance/status', ADMIN_KEY],
      ['GET', '/instance/status', null],
      ['GET', '/instance/status', 'wrong'],
      ['GET', '/instance/qr', ADMIN_KEY],
      ['POST', '/instance/connect', ADMIN_KEY, {}],
      ['POST', '/instance/pair', ADMIN_KEY, { phone: '5511999999999' }],
      ['POST', '/instance/reconnect', ADMIN_KEY],
      ['POST', '/instance/disconnect', ADMIN_KEY],
      ['DELETE', '/instance/logout', ADMIN_KEY],
      ['POST', '/send/text', ADMIN_KEY, { number: '5511999999999', text: 'x' }],
      ['GET', `/instance/${i.id}/advanced-settings`, ADMIN_KEY],
    ];
    for (const [method, url, apikey, body] of cases) {
      const r = await t.request(method as 'GET', url, { apikey, ...(body ? { body } : {}) });
      expect({ method, url, apikey, status: r.status, body: r.body }).toEqual({
        method,
        url,
        apikey,
        status: 401,
        body: { error: 'not authorized' },
      });
    }
  });

  it('a wrong key is a 401 even when the body is malformed', async () => {
    const r = await t.request('POST', '/instance/create', { apikey: 'wrong', rawBody: '{' });
    expect(r.status).toBe(401);
  });
});

describe('POST /instance/create', () => {
  it('200 with the flat instance JSON, including the token; any non-empty name, a token hard to guess', async () => {
    const i = await create();
    expect(Object.keys(i.data).sort()).toEqual(INSTANCE_FIELDS);
    expect(i.data).toMatchObject({
      name: i.name,
      token: i.token,
      webhook: '',
      rabbitmqEnable: 'disabled',
      websocketEnable: 'disabled',
      natsEnable: 'disabled',
      jid: '',
      qrcode: '',
      connected: false,
      expiration: 0,
      disconnect_reason: '',
      // Evolution GO stores no subscription until the first connect (issue #22).
      events: '',
      proxy: '',
      alwaysOnline: false,
      rejectCall: false,
      msgRejectCall: '',
    });
    expect(i.data['createdAt']).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    const anyName = await t.request('POST', '/instance/create', {
      body: { name: 'a.b c!', token: randomUUID() },
    });
    expect(anyName.status).toBe(200);
  });

  it('honours instanceId, proxy (port as a string) and advancedSettings', async () => {
    const instanceId = randomUUID();
    const i = await create({
      instanceId,
      proxy: { host: 'proxy.example.com', port: '8080', username: 'u', password: 'secret-pw' },
      advancedSettings: { rejectCall: true, msgRejectCall: 'busy' },
    });
    expect(i.id).toBe(instanceId);
    expect(JSON.parse(i.data['proxy'] as string)).toEqual({
      host: 'proxy.example.com',
      port: '8080',
      protocol: 'http',
      username: 'u',
    });
    expect(i.data).toMatchObject({ rejectCall: true, msgRejectCall: 'busy' });
  });

  it('reads the body as JSON whatever the content type (curl -d)', async () => {
    const r = await t.request('POST', '/instance/create', {
      rawBody: JSON.stringify({ name: 'curl-form', token: 'curl-form-token-0123456789' }),
      contentType: 'application/x-www-form-urlencoded',
    });
    expect(r.status).toBe(200);
  });

  it('Evolution GO error texts', async () => {
    const cases: Array<[string | undefined, number, string]> = [
      [undefined, 400, 'EOF'],
      ['{}', 400, 'name is required'],
      ['{"name":"n"}', 400, 'token is required'],
      ['{"name":"","token":"t"}', 400, 'name is required'],
      ['{"name":"n","token":"t","proxy":{"port":"1"}}', 400, 'proxy host is required'],
      ['{"name":"n","token":"t","proxy":{"host":"h"}}', 400, 'proxy port is required'],
      ['{"name":"n","token":"t","instanceId":"abc"}', 400, 'invalid UUID format: abc'],
      [
        '{"name":5,"token":"t"}',
        400,
        'json: cannot unmarshal number into Go struct field CreateStruct.name of type string',
      ],
      ['{', 400, 'unexpected EOF'],
    ];
    for (const [rawBody, status, error] of cases) {
      const r = await t.request('POST', '/instance/create', rawBody === undefined ? {} : { rawBody });
      expect({ rawBody, status: r.status, body: r.body }).toEqual({ rawBody, status, body: { error } });
    }
    const taken = await create();
    const again = await t.request('POST', '/instance/create', {
      body: { name: taken.name, token: 'other-token-0123456789' },
    });
    expect(again.body).toEqual({ error: 'instance already exists' });
    expect(again.status).toBe(409);
  });
});

describe('GET /instance/all and /instance/info/:id', () => {
  it('list every instance with its token; info by id; unknown → record not found', async () => {
    const i = await create();
    const all = await t.request('GET', '/instance/all');
    expect(all.status).toBe(200);
    expect(all.body['message']).toBe('success');
    const listed = (all.body['data'] as Body[]).find((x) => x['id'] === i.id);
    expect(listed).toMatchObject({ name: i.name, token: i.token });
    expect(Object.keys(listed!).sort()).toEqual(INSTANCE_FIELDS);

    const info = await t.request('GET', `/instance/info/${i.id}`);
    expect(info.status).toBe(200);
    expect(dataOf(info.body)).toEqual(listed);

    const unknown = await t.request('GET', `/instance/info/${randomUUID()}`);
    expect(unknown).toMatchObject({ status: 404, body: { error: 'record not found' } });
  });
});

describe('token rotation (issue #22, item 8)', () => {
  it('the admin listings show the rotated token, the one that works', async () => {
    const i = await create();
    const rotated = await t.request('POST', `/instance/${i.id}/token/rotate`, { apikey: i.token });
    expect(rotated.status).toBe(200);
    const token = rotated.body['token'] as string;
    expect(token).not.toBe(i.token);
    const info = dataOf((await t.request('GET', `/instance/info/${i.id}`)).body);
    expect(info['token']).toBe(token);
    const listed = ((await t.request('GET', '/instance/all')).body['data'] as Body[]).find(
      (x) => x['id'] === i.id,
    );
    expect(listed?.['token']).toBe(token);
    expect((await t.request('GET', '/instance/status', { apikey: token })).status).toBe(200);
    expect((await t.request('GET', '/instance/status', { apikey: i.token })).status).toBe(401);
    // Rotated by the admin, the same.
    const again = await t.request('POST', `/instance/${i.id}/token/rotate`);
    expect(dataOf((await t.request('GET', `/instance/info/${i.id}`)).body)['token']).toBe(
      again.body['token'],
    );
  });
});

describe('connect, QR, pairing code, status', () => {
  it('connect answers jid, webhookUrl and eventString; 0.7: empty values keep the stored ones', async () => {
    const i = await create();
    const first = await t.request('POST', '/instance/connect', {
      apikey: i.token,
      body: {
        webhookUrl: 'https://hooks.example/in',
        subscribe: ['MESSAGE', 'QRCODE', 'CHAT_PRESENCE', 'HISTORY_SYNC'],
        websocketEnable: 'enabled',
      },
    });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      message: 'success',
      data: { jid: '', webhookUrl: 'https://hooks.example/in', eventString: 'MESSAGE,PRESENCE,QRCODE' },
    });
    const manager = await t.request('POST', '/instance/connect', {
      apikey: i.token,
      body: { webhookUrl: '', subscribe: [], rabbitmqEnable: '', websocketEnable: '', natsEnable: '' },
    });
    expect(dataOf(manager.body)['webhookUrl']).toBe('https://hooks.example/in');
    const info = dataOf((await t.request('GET', `/instance/info/${i.id}`)).body);
    expect(info).toMatchObject({
      webhook: 'https://hooks.example/in',
      websocketEnable: 'enabled',
      rabbitmqEnable: 'disabled',
      events: 'MESSAGE,PRESENCE,QRCODE',
    });
    const all = await t.request('POST', '/instance/connect', {
      apikey: i.token,
      body: { subscribe: ['ALL'] },
    });
    expect(dataOf(all.body)['eventString']).toBe(
      'MESSAGE,SEND_MESSAGE,READ_RECEIPT,PRESENCE,HISTORY_SYNC,CHAT_PRESENCE,CALL,CONNECTION,LABEL,CONTACT,GROUP,NEWSLETTER,QRCODE',
    );
  });

  it('a fresh instance subscribes to MESSAGE at its first connect without a subscription (0.7)', async () => {
    const i = await create();
    expect(dataOf((await t.request('GET', `/instance/info/${i.id}`)).body)['events']).toBe('');
    const connected = await t.request('POST', '/instance/connect', { apikey: i.token, body: {} });
    expect(dataOf(connected.body)['eventString']).toBe('MESSAGE');
    expect(dataOf((await t.request('GET', `/instance/info/${i.id}`)).body)['events']).toBe('MESSAGE');
  });

  it('connect drops unknown event names while a valid one remains, and refuses a list of none (0.7)', async () => {
    const i = await create();
    const mixed = await t.request('POST', '/instance/connect', {
      apikey: i.token,
      body: { subscribe: ['QRCODE', 'invalid', 'CONNECTION', 'nope'] },
    });
    expect(mixed.status).toBe(200);
    expect(dataOf(mixed.body)['eventString']).toBe('CONNECTION,QRCODE');
    const none = await t.request('POST', '/instance/connect', {
      apikey: i.token,
      body: { subscribe: ['invalid', 'nope'] },
    });
    expect(none).toMatchObject({
      status: 400,
      body: { error: 'invalid connect settings: subscribe must contain a valid event or ALL' },
    });
    expect(dataOf((await t.request('GET', `/instance/info/${i.id}`)).body)['events']).toBe(
      'CONNECTION,QRCODE',
    );
  });

  it('connect refuses an empty body, null and a list of unknown event names (0.7)', async () => {
    const i = await create();
    for (const [rawBody, error] of [
      [undefined, 'EOF'],
      ['null', 'json: cannot unmarshal null into Go value of type ConnectStruct'],
      ['{"subscribe":["invalid"]}', 'invalid connect settings: subscribe must contain a valid event or ALL'],
      ['{"natsEnable":"maybe"}', 'natsEnable: expected "enabled", "disabled" or ""'],
    ] as const) {
      const r = await t.request('POST', '/instance/connect', {
        apikey: i.token,
        ...(rawBody === undefined ? {} : { rawBody }),
      });
      expect({ rawBody, status: r.status, body: r.body }).toEqual({ rawBody, status: 400, body: { error } });
    }
  });

  it('QR as {Qrcode, Code}; the instance JSON joins them with "|"; pairing code; status in PascalCase', async () => {
    const i = await create();
    const early = await t.request('GET', '/instance/qr', { apikey: i.token });
    expect(early).toMatchObject({
      status: 400,
      body: { error: 'no QR code available. Please wait a moment and try again' },
    });
    const before = await t.request('GET', '/instance/status', { apikey: i.token });
    expect(before.body).toEqual({
      message: 'success',
      data: { Connected: false, LoggedIn: false, Name: '' },
    });

    await connectAndShowQr(i);
    const qr = await t.request('GET', '/instance/qr', { apikey: i.token });
    const data = dataOf(qr.body);
    expect(Object.keys(data).sort()).toEqual(['Code', 'Qrcode']);
    expect(data['Qrcode']).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/=]+$/);
    expect(data['Code']).toMatch(/^fake-qr-/);
    const info = dataOf((await t.request('GET', `/instance/info/${i.id}`)).body);
    expect(info['qrcode']).toBe(`${data['Qrcode'] as string}|${data['Code'] as string}`);

    expect(await t.request('POST', '/instance/pair', { apikey: i.token, body: {} })).toMatchObject({
      status: 400,
      body: { error: 'phone is required' },
    });
    const pair = await t.request('POST', '/instance/pair', {
      apikey: i.token,
      body: { phone: '+5511918798714' },
    });
    expect(pair.status).toBe(200);
    expect(pair.body).toEqual({
      message: 'success',
      data: { PairingCode: expect.stringMatching(/^[0-9A-Z]{4}-[0-9A-Z]{4}$/) as unknown },
    });

    t.fake
      .live(i.id)
      .scan({ jid: '5511918798714@s.whatsapp.net', pushName: 'Maria', lid: '100000000000002@lid' });
    await eventually(async () => {
      const s = await t.request('GET', '/instance/status', { apikey: i.token });
      return dataOf(s.body)['LoggedIn'] === true;
    });
    const status = await t.request('GET', '/instance/status', { apikey: i.token });
    expect(dataOf(status.body)).toMatchObject({ Connected: true, LoggedIn: true });
    expect(await t.request('GET', '/instance/qr', { apikey: i.token })).toMatchObject({
      status: 400,
      body: { error: 'session already logged in' },
    });
    const opened = dataOf((await t.request('GET', `/instance/info/${i.id}`)).body);
    expect(opened).toMatchObject({ connected: true, qrcode: '' });
    expect(opened['jid']).not.toBe('');
  });
});

describe('reconnect, disconnect, logout, forcereconnect, delete', () => {
  it('answer {"message":"success"}', async () => {
    const i = await create();
    await openPaired(i);
    const ok = { status: 200, body: { message: 'success' } };
    expect(await t.request('POST', '/instance/disconnect', { apikey: i.token })).toMatchObject(ok);
    expect(await t.request('POST', '/instance/reconnect', { apikey: i.token })).toMatchObject(ok);
    await eventually(async () => {
      const s = await t.request('GET', '/instance/status', { apikey: i.token });
      return dataOf(s.body)['LoggedIn'] === true;
    });
    expect(await t.request('POST', `/instance/forcereconnect/${i.id}`, { body: {} })).toMatchObject({
      status: 400,
      body: { error: 'number is required' },
    });
    expect(
      await t.request('POST', `/instance/forcereconnect/${i.id}`, { body: { number: '5511918798714' } }),
    ).toMatchObject(ok);
    await eventually(async () => {
      const s = await t.request('GET', '/instance/status', { apikey: i.token });
      return dataOf(s.body)['LoggedIn'] === true;
    });
    expect(await t.request('DELETE', '/instance/logout', { apikey: i.token })).toMatchObject(ok);
    expect(dataOf((await t.request('GET', '/instance/status', { apikey: i.token })).body)).toEqual({
      Connected: false,
      LoggedIn: false,
      Name: '',
    });
    expect(await t.request('DELETE', `/instance/delete/${i.id}`)).toMatchObject(ok);
    expect(await t.request('GET', `/instance/info/${i.id}`)).toMatchObject({
      status: 404,
      body: { error: 'record not found' },
    });
    expect(await t.request('DELETE', `/instance/delete/${i.id}`)).toMatchObject({
      status: 404,
      body: { error: 'record not found' },
    });
  });

  it('disconnect of an instance that never connected is still a success', async () => {
    const i = await create();
    expect(await t.request('POST', '/instance/disconnect', { apikey: i.token })).toMatchObject({
      status: 200,
      body: { message: 'success' },
    });
  });
});

describe('advanced settings (Evolution GO 0.7 handler cases)', () => {
  it('GET is a bare object; the path must be the token own UUID', async () => {
    const a = await create({ advancedSettings: { alwaysOnline: true } });
    const b = await create();
    const path = (id: string): string => `/instance/${id}/advanced-settings`;
    const get = await t.request('GET', path(a.id), { apikey: a.token });
    expect(get).toMatchObject({ status: 200 });
    expect(get.body).toEqual({
      alwaysOnline: true,
      rejectCall: false,
      msgRejectCall: '',
      readMessages: false,
      ignoreGroups: false,
      ignoreStatus: false,
    });
    expect((await t.request('GET', path(a.id.toUpperCase()), { apikey: a.token })).status).toBe(200);
    for (const method of ['GET', 'PUT'] as const) {
      const body = method === 'PUT' ? { body: {} } : {};
      expect(await t.request(method, path(a.id), { apikey: null, ...body })).toMatchObject({ status: 401 });
      expect(await t.request(method, path(a.id), { apikey: 'wrong', ...body })).toMatchObject({
        status: 401,
      });
      expect(await t.request(method, path(b.id), { apikey: a.token, ...body })).toMatchObject({
        status: 403,
        body: { error: 'instanceId does not match authenticated instance' },
      });
      expect(await t.request(method, path('not-a-uuid'), { apikey: a.token, ...body })).toMatchObject({
        status: 400,
        body: { error: 'invalid instanceId' },
      });
    }
  });

  it('PUT is a partial update answering the persisted row', async () => {
    const a = await create();
    const path = `/instance/${a.id}/advanced-settings`;
    const put = (rawBody: string) => t.request('PUT', path, { apikey: a.token, rawBody });
    const first = await put('{"alwaysOnline":true,"msgRejectCall":"later"}');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      message: 'Advanced settings updated successfully',
      settings: {
        alwaysOnline: true,
        rejectCall: false,
        msgRejectCall: 'later',
        readMessages: false,
        ignoreGroups: false,
        ignoreStatus: false,
      },
    });
    const partial = await put('{"alwaysOnline":false,"msgRejectCall":""}');
    expect(partial.body).toMatchObject({ settings: { alwaysOnline: false, msgRejectCall: '' } });
    await put('{"readMessages":true}');
    const empty = await put('{}');
    expect(empty).toMatchObject({ status: 200, body: { settings: { readMessages: true } } });
    const nulls = await put('{"alwaysOnline":null,"msgRejectCall":null}');
    expect(nulls).toMatchObject({ status: 200, body: { settings: { readMessages: true } } });
    // The upstream Postman body: names the handler does not know are ignored.
    const postman = await put(
      '{"rejectCalls":true,"rejectCallMessage":"x","readMessages":false,"readStatus":true,"alwaysOnline":true}',
    );
    expect(postman.body).toMatchObject({
      settings: { rejectCall: false, readMessages: false, alwaysOnline: true, msgRejectCall: '' },
    });
    for (const bad of ['null', '[]', '{"alwaysOnline":"false"}', '{']) {
      const r = await put(bad);
      expect({ bad, status: r.status, hasError: typeof r.body['error'] }).toEqual({
        bad,
        status: 400,
        hasError: 'string',
      });
    }
    const get = await t.request('GET', path, { apikey: a.token });
    expect(get.body).toEqual(postman.body['settings']);
  });
});

describe('proxy', () => {
  it('POST answers host, port as a string, protocol and hasAuth; DELETE answers success', async () => {
    const i = await create();
    const set = await t.request('POST', `/instance/proxy/${i.id}`, {
      body: { host: 'proxy.example.com', port: '1080', username: 'u', password: 'p' },
    });
    expect(set.body).toEqual({
      message: 'success',
      data: { host: 'proxy.example.com', port: '1080', protocol: 'socks5', hasAuth: true },
    });
    const numeric = await t.request('POST', `/instance/proxy/${i.id}`, {
      body: { protocol: 'http', host: 'proxy.example.com', port: 8080 },
    });
    expect(dataOf(numeric.body)).toEqual({
      host: 'proxy.example.com',
      port: '8080',
      protocol: 'http',
      hasAuth: false,
    });
    expect(await t.request('POST', `/instance/proxy/${i.id}`, { body: { port: '1' } })).toMatchObject({
      status: 400,
      body: { error: 'host is required' },
    });
    expect(await t.request('POST', `/instance/proxy/${i.id}`, { body: { host: 'h' } })).toMatchObject({
      status: 400,
      body: { error: 'port is required' },
    });
    expect(await t.request('DELETE', `/instance/proxy/${i.id}`)).toMatchObject({
      status: 200,
      body: { message: 'success' },
    });
    expect(dataOf((await t.request('GET', `/instance/info/${i.id}`)).body)['proxy']).toBe('');
  });
});

describe('GET /instance/logs/:id', () => {
  it('a bare array of Evolution GO entries, filtered by day range and an exact level set', async () => {
    const i = await create();
    await openPaired(i);
    await t.request('POST', '/instance/disconnect', { apikey: i.token });
    const today = new Date().toISOString().slice(0, 10);
    const r = await t.request<Body[]>('GET', `/instance/logs/${i.id}`);
    expect(r.status).toBe(200);
    expect(Array.isArray(r.body)).toBe(true);
    expect(r.body.length).toBeGreaterThan(0);
    for (const entry of r.body) {
      expect(entry).toMatchObject({ instance_id: i.id, message: expect.any(String) as unknown });
      expect(entry['level']).toMatch(/^(DEBUG|INFO|WARN|ERROR)$/);
      expect(Date.parse(entry['timestamp'] as string)).not.toBeNaN();
      expect(
        Object.keys(entry).every((k) =>
          ['timestamp', 'level', 'instance_id', 'message', 'metadata'].includes(k),
        ),
      ).toBe(true);
    }
    const stamps = r.body.map((e) => e['timestamp'] as string);
    expect([...stamps].sort().reverse()).toEqual(stamps);

    const infoOnly = await t.request<Body[]>(
      'GET',
      `/instance/logs/${i.id}?level=info&start_date=${today}&end_date=${today}&limit=2`,
    );
    expect(infoOnly.body.length).toBeLessThanOrEqual(2);
    expect(infoOnly.body.every((e) => e['level'] === 'INFO')).toBe(true);
    const past = await t.request<Body[]>(
      'GET',
      `/instance/logs/${i.id}?start_date=2025-04-11&end_date=2025-04-17`,
    );
    expect(past.body).toEqual([]);
    expect(await t.request('GET', `/instance/logs/${i.id}?level=INFO,LOUD`)).toMatchObject({
      status: 400,
      body: { error: 'nível de log inválido: LOUD' },
    });
  });
});

describe('POST /send/text', () => {
  it('sends with delay, quote and mentions; answers the message Info in PascalCase', async () => {
    const i = await create();
    await openPaired(i);
    const started = Date.now();
    const r = await t.request('POST', '/send/text', {
      apikey: i.token,
      body: {
        number: '5511999999999',
        text: 'olá @5511988887777',
        delay: 300,
        mentionedJid: '5511988887777@s.whatsapp.net',
        quoted: { messageId: '3EB00E86C964FE604AF39A', participant: '5511988887777@s.whatsapp.net' },
      },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(r.status).toBe(200);
    const data = dataOf(r.body);
    expect(data['Info']).toMatchObject({
      ID: expect.any(String) as unknown,
      Chat: '5511999999999@s.whatsapp.net',
      IsFromMe: true,
      IsGroup: false,
      Type: 'ExtendedTextMessage',
    });
    expect((data['Info'] as Body)['Sender']).toMatch(/@s\.whatsapp\.net$/);
    expect(data['Message']).toEqual({
      extendedTextMessage: {
        text: 'olá @5511988887777',
        contextInfo: {
          mentionedJID: ['5511988887777@s.whatsapp.net'],
          stanzaID: '3EB00E86C964FE604AF39A',
          participant: '5511988887777@s.whatsapp.net',
        },
      },
    });
    const sent = t.fake.sent.at(-1)!;
    expect(sent.options).toMatchObject({
      mentions: ['5511988887777@s.whatsapp.net'],
      quoted: { messageId: '3EB00E86C964FE604AF39A' },
    });
    expect(
      t.fake.live(i.id).commands.some((c) => c.type === 'sendPresence' && c.presence === 'composing'),
    ).toBe(true);
  });

  it('Evolution GO error texts', async () => {
    const i = await create();
    for (const [body, status, error] of [
      [{ text: 'x' }, 400, 'phone number is required'],
      [{ number: '5511999999999' }, 400, 'message body is required'],
      [{ number: '5511999999999', text: 'x' }, 400, 'no active session found'],
    ] as const) {
      const r = await t.request('POST', '/send/text', { apikey: i.token, body });
      expect({ body, status: r.status, reply: r.body }).toEqual({ body, status, reply: { error } });
    }
  });
});

describe('secrets', () => {
  it('instance tokens never reach the event log', async () => {
    const i = await create();
    const { events } = await t.zapwire.store.readAll({ limit: 100_000 });
    expect(JSON.stringify(events)).not.toContain(i.token);
    const { rows } = await t.zapwire.db.query<{ sealed: string }>(
      "SELECT sealed FROM zw_instance_secrets WHERE instance_id = $1 AND kind = 'instance_token'",
      [i.id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.sealed).not.toContain(i.token);
  });
});
