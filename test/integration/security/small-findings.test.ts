/**
 * Finding 11, the smaller items: a date before year 1 is not a 500, query strings are typed, the manager
 * forwarder resolves dot segments before its allowlist, TRUST_PROXY makes the cookie Secure behind TLS.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
let id = '';
beforeAll(async () => {
  t = await startTestApp({ env: { TRUST_PROXY: '127.0.0.1' } });
  id = (await t.request<{ id: string }>('POST', '/instance/create', { body: { name: 'small' } })).body.id;
});
afterAll(async () => {
  await t?.stop();
});

/** A GET with the path exactly as written (no dot-segment resolution). */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const { host, port } = new URL(url);
  const path = url.slice(url.indexOf('/', 'http://'.length));
  return new Promise((resolve, reject) => {
    const request = http.request({ host: host.split(':')[0], port, path, headers }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

async function signIn(headers: Record<string, string> = {}) {
  const r = await t.zapwire.app.inject({
    method: 'POST',
    url: '/manager/session',
    headers: { 'content-type': 'application/json', ...headers },
    payload: JSON.stringify({ apikey: ADMIN_KEY }),
  });
  expect(r.statusCode).toBe(200);
  const cookie = String(r.headers['set-cookie']);
  return { cookie, csrf: (r.json() as { csrf: string }).csrf };
}

describe('smaller findings', () => {
  it('GET /instance/logs/:id?since=0000-01-01T00:00:00Z answers 200, not 500', async () => {
    const r = await t.request('GET', `/instance/logs/${id}?since=0000-01-01T00:00:00Z`);
    expect(r.status).toBe(200);
  });

  it('?limit=10 on webhook deliveries is a number, and ?limit=ten a clear 400', async () => {
    expect((await t.request('GET', `/instance/${id}/webhook/deliveries?limit=10`)).status).toBe(200);
    const bad = await t.request<{ error: { code: string } }>(
      'GET',
      `/instance/${id}/webhook/deliveries?limit=ten`,
    );
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('ZW_ERR_VALIDATION');
  });

  it('the manager forwarder checks the resolved path: /manager/api/instance/../metrics is refused', async () => {
    const { cookie, csrf } = await signIn();
    const session = cookie.split(';')[0]!;
    // Over a real socket: inject() would normalise the path before the router sees it; curl
    // --path-as-is and hand-written clients do not.
    const base = await t.zapwire.app.listen({ port: 0, host: '127.0.0.1' });
    for (const path of ['/manager/api/instance/../metrics', '/manager/api/instance/%2e%2e/metrics']) {
      const { status, body } = await rawGet(`${base}${path}`, { cookie: session, 'x-zapwire-csrf': csrf });
      expect(status, path).toBe(400);
      expect(body).not.toContain('zapwire_');
    }
    const allowed = await t.zapwire.app.inject({
      method: 'GET',
      url: '/manager/api/instance/all',
      headers: { cookie: session, 'x-zapwire-csrf': csrf },
    });
    expect(allowed.statusCode).toBe(200);
  });

  it('marks the session cookie Secure behind a trusted TLS proxy (TRUST_PROXY)', async () => {
    expect((await signIn({ 'x-forwarded-proto': 'https' })).cookie).toMatch(/;\s*Secure/i);
    expect((await signIn()).cookie).not.toMatch(/;\s*Secure/i);
  });
});
