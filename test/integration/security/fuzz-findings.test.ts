/**
 * Defects the route fuzzer (route-fuzz.test.ts) found, one regression test each: answers in the
 * documented error shape `{ error: { code, message } }` that never quote a key back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
let token = '';
beforeAll(async () => {
  t = await startTestApp();
  token = (await t.request<{ token: string }>('POST', '/instance/create', { body: { name: 'fuzzed' } })).body
    .token;
});
afterAll(async () => {
  await t?.stop();
});

async function get(url: string, method: 'GET' | 'HEAD' = 'GET') {
  const r = await t.zapwire.app.inject({ method, url, headers: { apikey: ADMIN_KEY } });
  return { status: r.statusCode, type: String(r.headers['content-type']), text: r.body };
}

describe('found by the route fuzzer', () => {
  it('an unknown route does not quote the query back (it may hold ?apikey=)', async () => {
    const r = await get(`/no/such/route?apikey=${token}`);
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text)).toEqual({
      error: { code: 'ZW_ERR_ROUTE_NOT_FOUND', message: 'no route GET /no/such/route; see /docs' },
    });
    expect(r.text).not.toContain(token);
  });

  it('a malformed URL is a 400 in the error shape, quoting nothing of it', async () => {
    for (const url of ['/instance/info/%', `/instance/info/%ZZ?apikey=${token}`]) {
      const r = await get(url);
      expect(r.status, url).toBe(400);
      const body = JSON.parse(r.text) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('ZW_ERR_BAD_REQUEST');
      expect(body.error.message).toMatch(/^malformed URL/);
      expect(r.text).not.toContain(token);
    }
  });

  it('a WebSocket route asked for without an upgrade is a 426 in the error shape, not an empty 404', async () => {
    for (const url of ['/ws', '/manager/live', '/debug/instances/fuzzed/live']) {
      const r = await get(url);
      expect(r.status, url).toBe(426);
      expect(r.type).toMatch(/^application\/json/);
      expect((JSON.parse(r.text) as { error: { code: string } }).error.code).toBe('ZW_ERR_UPGRADE_REQUIRED');
      expect((await get(url, 'HEAD')).status, `HEAD ${url}`).toBe(426);
    }
  });

  it('text PostgreSQL cannot store (NUL, an unpaired surrogate) is a 400 naming the field, not a 500', async () => {
    const id = (await t.request<{ id: string }>('GET', '/instance/info/fuzzed')).body.id;
    const cases: Array<{ method: 'GET' | 'PUT'; url: string; payload?: string; where: string }> = [
      { method: 'GET', url: '/instance/info/%00', where: 'path.id' },
      { method: 'GET', url: '/instance/status?instanceName=a%00b', where: 'query.instanceName' },
      {
        method: 'PUT',
        url: `/instance/${id}/advanced-settings`,
        payload: '{"msgRejectCall":"a\\u0000b"}',
        where: 'body.msgRejectCall',
      },
      {
        method: 'PUT',
        url: `/instance/${id}/advanced-settings`,
        payload: '{"msgRejectCall":"a\\ud800b"}',
        where: 'body.msgRejectCall',
      },
      {
        method: 'PUT',
        url: `/instance/${id}/advanced-settings`,
        payload: '{"msgRejectCall":"\\udc00"}',
        where: 'body.msgRejectCall',
      },
    ];
    for (const c of cases) {
      const r = await t.zapwire.app.inject({
        method: c.method,
        url: c.url,
        headers: { apikey: ADMIN_KEY, ...(c.payload ? { 'content-type': 'application/json' } : {}) },
        ...(c.payload ? { payload: c.payload } : {}),
      });
      expect(r.statusCode, `${c.url} ${c.payload ?? ''}`).toBe(400);
      const body = r.json() as { error: { code: string; message: string } };
      expect(body.error.code).toBe('ZW_ERR_VALIDATION');
      expect(body.error.message.startsWith(`${c.where}:`), body.error.message).toBe(true);
    }
    // A well-formed emoji (a surrogate pair) is fine.
    const ok = await t.request('PUT', `/instance/${id}/advanced-settings`, {
      body: { msgRejectCall: 'busy 😀' },
    });
    expect(ok.status).toBe(200);
  });

  it('a body nested 20 000 deep is a 400, not a 500 (the manager forwarder re-serialises the body)', async () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    for (const url of ['/manager/api/instance/status', '/instance/connect']) {
      const r = await t.zapwire.app.inject({
        method: 'POST',
        url,
        headers: { apikey: ADMIN_KEY, 'content-type': 'application/json' },
        payload: deep,
      });
      expect(r.statusCode, url).toBe(400);
      expect((r.json() as { error: { message: string } }).error.message).toBe(
        'body: nested deeper than 64 levels',
      );
    }
  });

  it('a repeated /ws query key is a 400 naming it, not a 500 (it reached the hook as an array)', async () => {
    const r = await get('/ws?instanceName=a&instanceName=b');
    expect(r.status).toBe(400);
    expect((JSON.parse(r.text) as { error: { code: string; message: string } }).error).toEqual({
      code: 'ZW_ERR_VALIDATION',
      message: 'instanceName: give it once, as text (it came repeated)',
    });
  });

  it('a manager path the URL parser refuses, or one naming another host, is a 400, not a 500', async () => {
    for (const path of ['/\\p@p<', '//elsewhere.example/instance/all', '/\\elsewhere.example/instance/all']) {
      const r = await get(`/manager/api${path}`);
      expect(r.status, path).toBe(400);
      expect((JSON.parse(r.text) as { error: { message: string } }).error.message, path).toMatch(
        /not a path of this API$/,
      );
    }
    expect((await get('/manager/api/instance/all')).status).toBe(200);
  });
});

describe('found by the route fuzzer in the Evolution GO profile', () => {
  let evo: TestApp;
  beforeAll(async () => {
    evo = await startTestApp({ env: { API_COMPAT: 'evolution-go' } });
  });
  afterAll(async () => {
    await evo?.stop();
  });

  it("an error on a route the profile does not adapt (zapwire's own, every HEAD twin) is Evolution GO's {error}, not a 500", async () => {
    for (const [method, url] of [
      ['GET', '/admin/cluster'],
      ['HEAD', '/admin/cluster'],
      ['HEAD', '/instance/all'],
      ['GET', '/admin/projections'],
    ] as const) {
      const r = await evo.zapwire.app.inject({ method, url });
      expect(r.statusCode, `${method} ${url}`).toBe(401);
      if (method === 'GET') expect(r.json(), url).toEqual({ error: 'not authorized' });
    }
  });
});
