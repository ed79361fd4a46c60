/**
 * Every route × {admin key, own token, another instance's token, no key, wrong key}: an instance token
 * never reaches another instance (403), a missing or wrong key is a 401, and nothing answers 5xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
// Placeholders until beforeAll creates the instances: test names are built before it runs.
let a = { id: ':id', token: '' };
let b = { id: ':id', token: '' };
let counter = 0;

beforeAll(async () => {
  t = await startTestApp();
  for (const name of ['alpha', 'beta']) {
    const r = await t.request('POST', '/instance/create', { body: { name, token: `${name}-token-123456` } });
    expect(r.status).toBe(201);
  }
  const all = await t.request<Array<{ id: string; name: string }>>('GET', '/instance/all');
  a = { id: all.body.find((i) => i.name === 'alpha')!.id, token: 'alpha-token-123456' };
  b = { id: all.body.find((i) => i.name === 'beta')!.id, token: 'beta-token-123456' };
});
afterAll(async () => {
  await t?.stop();
});

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
interface RouteCase {
  readonly method: Method;
  readonly url: () => string;
  readonly body?: () => unknown;
  readonly adminOnly?: boolean;
}

const routes: RouteCase[] = [
  { method: 'GET', url: () => '/instance/all', adminOnly: true },
  {
    method: 'POST',
    url: () => '/instance/create',
    body: () => ({ name: `made-${++counter}` }),
    adminOnly: true,
  },
  { method: 'GET', url: () => `/instance/info/${a.id}`, adminOnly: true },
  { method: 'GET', url: () => '/instance/status?instanceName=alpha' },
  { method: 'POST', url: () => '/instance/connect', body: () => ({ instanceName: 'alpha' }) },
  { method: 'GET', url: () => '/instance/qr?instanceName=alpha' },
  { method: 'POST', url: () => '/instance/reconnect', body: () => ({ instanceName: 'alpha' }) },
  { method: 'POST', url: () => '/instance/disconnect', body: () => ({ instanceName: 'alpha' }) },
  { method: 'POST', url: () => '/instance/logout', body: () => ({ instanceName: 'alpha' }) },
  { method: 'DELETE', url: () => '/instance/logout?instanceName=alpha' },
  { method: 'GET', url: () => `/instance/${a.id}/advanced-settings` },
  { method: 'PUT', url: () => `/instance/${a.id}/advanced-settings`, body: () => ({ alwaysOnline: true }) },
  { method: 'POST', url: () => `/instance/${a.id}/advanced-settings`, body: () => ({ ignoreGroups: true }) },
  { method: 'PUT', url: () => `/instance/${a.id}/events`, body: () => ({ subscribe: ['MESSAGE', 'CALL'] }) },
  {
    method: 'POST',
    url: () => `/instance/proxy/${a.id}`,
    body: () => ({ host: 'proxy.local', port: 1080 }),
    adminOnly: true,
  },
  { method: 'DELETE', url: () => `/instance/proxy/${a.id}`, adminOnly: true },
  { method: 'GET', url: () => `/instance/logs/${a.id}` },
  {
    method: 'POST',
    url: () => '/send/text',
    body: () => ({ instanceName: 'alpha', number: '5511999999999', text: 'hi' }),
  },
  {
    method: 'POST',
    url: () => '/instance/pair',
    body: () => ({ instanceName: 'alpha', phone: '5511999999999' }),
  },
];

function label(route: RouteCase): string {
  return `${route.method} ${route.url()}`;
}

describe('auth matrix', () => {
  for (const route of routes) {
    it(`${label(route)}`, async () => {
      const send = (apikey: string | null) =>
        t.request(route.method, route.url(), { apikey, ...(route.body ? { body: route.body() } : {}) });

      const none = await send(null);
      expect(none.status, 'no key').toBe(401);
      expect((none.body['error'] as { code: string }).code).toBe('ZW_ERR_UNAUTHORIZED');
      const wrong = await send('not-a-real-key-at-all');
      expect(wrong.status, 'wrong key').toBe(401);

      const other = await send(b.token);
      expect(other.status, "another instance's token").toBe(403);

      const own = await send(a.token);
      if (route.adminOnly) expect(own.status, 'own token on an admin route').toBe(403);
      else {
        expect([401, 403], 'own token').not.toContain(own.status);
        expect(own.status, JSON.stringify(own.body)).toBeLessThan(500);
      }

      const admin = await send(undefined as unknown as string);
      expect([401, 403], 'admin').not.toContain(admin.status);
      expect(admin.status, JSON.stringify(admin.body)).toBeLessThan(500);
    });
  }

  it('DELETE /instance/delete/:id needs the admin key', async () => {
    const victim = await t.request('POST', '/instance/create', {
      body: { name: 'victim', token: 'victim-token-1234' },
    });
    const id = victim.body['id'] as string;
    expect((await t.request('DELETE', `/instance/delete/${id}`, { apikey: null })).status).toBe(401);
    expect(
      (await t.request('DELETE', `/instance/delete/${id}`, { apikey: 'wrong-key-wrong-key' })).status,
    ).toBe(401);
    expect((await t.request('DELETE', `/instance/delete/${id}`, { apikey: b.token })).status).toBe(403);
    expect(
      (await t.request('DELETE', `/instance/delete/${id}`, { apikey: 'victim-token-1234' })).status,
    ).toBe(403);
    expect((await t.request('DELETE', `/instance/delete/${id}`)).status).toBe(200);
    expect((await t.request('GET', '/instance/status', { apikey: 'victim-token-1234' })).status).toBe(401);
  });

  it('never lists tokens', async () => {
    const all = await t.request('GET', '/instance/all');
    expect(JSON.stringify(all.body)).not.toContain('alpha-token-123456');
    const info = await t.request('GET', `/instance/info/${a.id}`);
    expect(JSON.stringify(info.body)).not.toContain('alpha-token-123456');
  });

  it('checks the key before the body: a wrong key with an invalid body is a 401, not a 400', async () => {
    for (const apikey of [null, 'not-a-real-key-at-all']) {
      const bad = await t.request('POST', '/instance/create', { apikey, body: { name: '' } });
      expect(bad.status, `apikey ${apikey}`).toBe(401);
      const garbage = await t.request('POST', '/send/text', { apikey, rawBody: '{not json' });
      expect(garbage.status, `apikey ${apikey}`).toBe(401);
    }
    // An instance token on an admin route is refused before the body is looked at, too.
    expect((await t.request('POST', '/instance/create', { apikey: a.token, body: {} })).status).toBe(403);
    // With a valid key the body is checked as before.
    expect((await t.request('POST', '/instance/create', { body: { name: '' } })).status).toBe(400);
  });
});
