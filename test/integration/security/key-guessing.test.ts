/**
 * Issue #22, item 7: a custom instance token must be hard to guess (length and variety, in both profiles,
 * each refusing in its own error shape), and wrong keys are throttled per client address: after
 * AUTH_FAILURES_BURST wrong keys an address gets 429 with Retry-After (every keyed request from it, a
 * right key too, or guessing would go on), regaining AUTH_FAILURES_PER_MINUTE tries a minute; other
 * addresses are not affected. An IPv6 /64 counts as one address.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestApp, type TestApp } from '../../support/zapwire.ts';

const BURST = 20;

for (const profile of ['default', 'evolution-go'] as const) {
  describe(`guessing keys (${profile} profile)`, () => {
    let t: TestApp;
    let token: string;
    beforeAll(async () => {
      t = await startTestApp({
        env: {
          AUTH_FAILURES_BURST: String(BURST),
          AUTH_FAILURES_PER_MINUTE: '10',
          ...(profile === 'evolution-go' ? { API_COMPAT: 'evolution-go' } : {}),
        },
      });
      token = randomUUID();
      const created = await t.request('POST', '/instance/create', { body: { name: 'guessed', token } });
      expect(created.status).toBeLessThan(300);
    });
    afterAll(async () => {
      await t?.stop();
    });

    /** A request from a chosen client address, as the server sees it. */
    async function from(
      address: string,
      apikey: string,
      url = '/instance/status',
    ): Promise<{ status: number; retryAfter: string | undefined; body: unknown }> {
      const r = await t.zapwire.app.inject({
        method: 'GET',
        url,
        headers: { apikey },
        remoteAddress: address,
      });
      return {
        status: r.statusCode,
        retryAfter: r.headers['retry-after'] as string | undefined,
        body: r.json(),
      };
    }

    const expectError = (body: unknown, message: RegExp): void => {
      if (profile === 'default')
        expect(body).toEqual({
          error: {
            code: expect.stringMatching(/^ZW_ERR_/) as string,
            message: expect.stringMatching(message),
          },
        });
      else expect(body).toEqual({ error: expect.stringMatching(message) as string });
    };

    it('refuses weak custom tokens at create, in the profile’s error shape', async () => {
      for (const weak of [
        'Q',
        'short-token',
        'aaaaaaaaaaaaaaaaaaaaaaaa',
        'abababababababababab',
        '1212121212121212',
      ]) {
        const r = await t.request('POST', '/instance/create', {
          body: { name: `weak-${weak.length}`, token: weak },
        });
        expect({ weak, status: r.status }).toEqual({ weak, status: 400 });
        expectError(r.body, /token.*16 characters/);
      }
      for (const strong of [randomUUID(), 'zapwire-tenant-7f3k9q2m', 'openssl-hex-9a0b1c2d3e4f5a6b']) {
        const r = await t.request('POST', '/instance/create', {
          body: { name: `strong-${strong.slice(-6)}`, token: strong },
        });
        expect({ strong, status: r.status }).toEqual({ strong, status: profile === 'default' ? 201 : 200 });
      }
    });

    it('500 wrong keys from one address: 401 up to the burst, then 429 with Retry-After', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 500; i++) {
        const answer = await from('203.0.113.7', `wrong-key-${i}-0123456789`);
        statuses.push(answer.status);
        if (answer.status === 429) {
          expect(Number(answer.retryAfter)).toBeGreaterThan(0);
          expectError(answer.body, /too many wrong API keys/);
        }
      }
      expect(statuses.filter((s) => s === 401)).toHaveLength(BURST);
      expect(statuses.slice(BURST).every((s) => s === 429)).toBe(true);
      // The right key from the throttled address waits too; from another address it works.
      expect((await from('203.0.113.7', token)).status).toBe(429);
      expect((await from('203.0.113.8', token)).status).toBe(200);
      // A request without a key is not a guess: it is answered as always.
      const anonymous = await t.zapwire.app.inject({
        method: 'GET',
        url: '/health',
        remoteAddress: '203.0.113.7',
      });
      expect(anonymous.statusCode).toBe(200);
    });

    it('an IPv6 /64 is one address', async () => {
      for (let i = 0; i < BURST; i++)
        expect((await from(`2001:db8:1:2::${i.toString(16)}`, 'nope-0123456789')).status).toBe(401);
      expect((await from('2001:db8:1:2:ffff::1', token)).status).toBe(429);
      expect((await from('2001:db8:1:3::1', token)).status).toBe(200);
    });

    it('the manager’s sign-in counts wrong keys too', async () => {
      const signIn = (apikey: string) =>
        t.zapwire.app.inject({
          method: 'POST',
          url: '/manager/session',
          headers: { 'content-type': 'application/json' },
          payload: JSON.stringify({ apikey }),
          remoteAddress: '198.51.100.9',
        });
      for (let i = 0; i < BURST; i++)
        expect((await signIn(`wrong-${i}-0123456789abcdef`)).statusCode).toBe(401);
      const throttled = await signIn(ADMIN_KEY);
      expect(throttled.statusCode).toBe(429);
      expect(Number(throttled.headers['retry-after'])).toBeGreaterThan(0);
    });
  });
}
