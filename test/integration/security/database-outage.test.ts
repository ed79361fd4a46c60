/**
 * Issue #22, item 15: while the database cannot be reached, requests answer 503 with Retry-After (in
 * each profile's error shape), never a 500, and never a 401 for a token that could not be checked; once
 * the database is back, the same requests succeed. The app reaches its PostgreSQL through a TCP proxy
 * the test cuts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrlForDataDir, dropDatabaseOfDataDir } from '../../support/postgres.ts';
import { proxyPostgres, type TcpProxy } from '../../support/tcp-proxy.ts';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

for (const profile of ['default', 'evolution-go'] as const) {
  describe(`a database outage (${profile} profile)`, () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-outage-'));
    let proxy: TcpProxy;
    let t: TestApp;
    let token: string;

    beforeAll(async () => {
      const proxied = await proxyPostgres(await databaseUrlForDataDir(dataDir));
      proxy = proxied.proxy;
      t = await startTestApp({
        dataDir,
        env: {
          DATABASE_URL: proxied.url,
          ...(profile === 'evolution-go' ? { API_COMPAT: 'evolution-go' } : {}),
        },
      });
      token = `outage-token-${profile}-0123456789`;
      const created = await t.request('POST', '/instance/create', { body: { name: 'outage', token } });
      expect(created.status).toBeLessThan(300);
    }, 60_000);

    afterAll(async () => {
      await proxy.restore();
      await t?.stop();
      await proxy.stop();
      await dropDatabaseOfDataDir(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('answers 503 with Retry-After while the database is gone, and works again when it is back', async () => {
      await proxy.cut();
      const requests: Array<[method: 'GET' | 'POST', url: string, apikey?: string, body?: unknown]> = [
        ['GET', '/instance/all'],
        ['POST', '/instance/create', undefined, { name: 'during', token: 'during-the-outage-0123456789' }],
        ['GET', '/instance/status', token],
        ['POST', '/instance/connect', token, {}],
      ];
      for (const [method, url, apikey, body] of requests) {
        const r = await t.request(method, url, { ...(apikey ? { apikey } : {}), ...(body ? { body } : {}) });
        const where = `${method} ${url} → ${r.status} ${JSON.stringify(r.body)}`;
        expect(r.status, where).toBe(503);
        expect(Number(r.headers['retry-after']), where).toBeGreaterThan(0);
        const error = (r.body as { error?: unknown }).error;
        if (profile === 'default')
          expect(error, where).toMatchObject({
            code: 'ZW_ERR_UNAVAILABLE',
            message: expect.stringMatching(/database/) as string,
          });
        else expect(error, where).toMatch(/database/);
      }
      await proxy.restore();
      await expect
        .poll(async () => (await t.request('GET', '/instance/status', { apikey: token })).status, {
          timeout: 15_000,
        })
        .toBe(200);
      expect((await t.request('GET', '/instance/all')).status).toBe(200);
    }, 60_000);
  });
}
