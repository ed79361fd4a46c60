/**
 * Issue #14 findings that had no test of their own: finding 11, `/health` showed raw database errors
 * (hosts, users, paths) to anyone; finding 7, a DATA_DIR looser than 0700 is reported.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDataDir } from '../../../src/config.ts';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

describe('health and data at rest', () => {
  it('/health says the store is unreachable without the driver message', async () => {
    const store = t.zapwire.store as { ping: () => Promise<void> };
    const ping = store.ping;
    store.ping = async () => {
      throw new Error('password authentication failed for user "zapwire" at db.internal.example:5432');
    };
    try {
      const r = await t.request<Record<string, unknown>>('GET', '/health', { apikey: null });
      expect(r.status).toBe(503);
      expect(r.body['status']).toBe('unavailable');
      expect(JSON.stringify(r.body)).not.toMatch(/zapwire"|db\.internal|5432|password/);
    } finally {
      store.ping = ping;
    }
    expect((await t.request('GET', '/health', { apikey: null })).status).toBe(200);
  });

  it('a DATA_DIR other users can read is reported; a 0700 one is not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zw-mode-'));
    try {
      chmodSync(dir, 0o755);
      expect(ensureDataDir(dir)).toMatch(/mode 755.*chmod 700/);
      chmodSync(dir, 0o700);
      expect(ensureDataDir(dir)).toBeUndefined();
      const fresh = join(dir, 'new');
      expect(ensureDataDir(fresh)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
