/**
 * Issue #22, item 14: the manager's browser session is held by the server. Sign-out revokes it (the old
 * cookie opens nothing any more), and opening the page rotates it: a new cookie and a new CSRF token,
 * the old cookie revoked, instead of the same session with a later expiry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signInManager, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

async function signIn(): Promise<{ cookie: string; csrf: string }> {
  const { status, cookie, csrf } = await signInManager(t.zapwire.app);
  expect(status).toBe(200);
  return { cookie, csrf };
}

const page = (cookie: string) =>
  t.zapwire.app.inject({ method: 'GET', url: '/manager', headers: { cookie } });
const api = (cookie: string, csrf: string) =>
  t.zapwire.app.inject({
    method: 'GET',
    url: '/manager/api/instance/all',
    headers: { cookie, 'x-zapwire-csrf': csrf },
  });

describe('manager sessions (issue #22, item 14)', () => {
  it('sign-out revokes the session on the server: the old cookie opens nothing', async () => {
    const { cookie, csrf } = await signIn();
    expect((await api(cookie, csrf)).statusCode).toBe(200);
    const out = await t.zapwire.app.inject({
      method: 'DELETE',
      url: '/manager/session',
      headers: { cookie },
    });
    expect(out.statusCode).toBe(204);
    expect(String(out.headers['set-cookie'])).toMatch(/Max-Age=0/);
    // The browser forgot the cookie; whoever copied it cannot use it.
    expect((await api(cookie, csrf)).statusCode).toBe(401);
    const again = await page(cookie);
    expect(again.statusCode).toBe(401);
    expect(again.headers['set-cookie']).toBeUndefined();
    const session = await t.zapwire.app.inject({
      method: 'GET',
      url: '/manager/session',
      headers: { cookie },
    });
    expect(session.statusCode).toBe(401);
  });

  it('opening the page rotates the session: new cookie, new CSRF token, the old cookie revoked', async () => {
    const first = await signIn();
    const opened = await page(first.cookie);
    expect(opened.statusCode).toBe(200);
    const rotated = String(opened.headers['set-cookie']).split(';')[0] ?? '';
    expect(rotated).toMatch(/^zapwire_session=/);
    expect(rotated).not.toBe(first.cookie);
    const session = await t.zapwire.app.inject({
      method: 'GET',
      url: '/manager/session',
      headers: { cookie: rotated },
    });
    expect(session.statusCode).toBe(200);
    const csrf = (session.json() as { csrf: string }).csrf;
    expect(csrf).not.toBe(first.csrf);
    expect((await api(rotated, csrf)).statusCode).toBe(200);
    // The old pair works no more, nor the new cookie with the old page token.
    expect((await api(first.cookie, first.csrf)).statusCode).toBe(401);
    expect((await api(rotated, first.csrf)).statusCode).toBe(403);
  });

  it('a cookie the server never issued is refused, however it is shaped', async () => {
    for (const value of [
      'v1.9999999999999.bm9uY2U.bWFj',
      'v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      'x',
    ]) {
      expect((await page(`zapwire_session=${value}`)).statusCode).toBe(401);
    }
  });
});
