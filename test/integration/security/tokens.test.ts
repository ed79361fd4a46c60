/**
 * Finding 10: token digests are HMACs under a server pepper (not unsalted SHA-256 in stream names), old
 * SHA-256 tokens keep working, tokens rotate (admin or the instance itself), generated tokens are long.
 * Finding 4: a wrong key is a 401 before the body is validated.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

async function create(name: string, token?: string): Promise<{ id: string; token: string }> {
  const r = await t.request<{ id: string; token: string }>('POST', '/instance/create', {
    body: { name, ...(token ? { token } : {}) },
  });
  expect(r.status).toBe(201);
  return r.body;
}

const status = async (apikey: string): Promise<number> =>
  (await t.request('GET', '/instance/status', { apikey })).status;

describe('tokens', () => {
  it('stores no unsalted SHA-256 of a token, and generates 256-bit tokens', async () => {
    const custom = await create('peppered', 'short-custom-0001');
    expect(await t.zapwire.store.streamVersion(`token-${sha256('short-custom-0001')}`)).toBe(0);
    const { rows } = await t.zapwire.db.query<{ token_hash: string }>(
      'SELECT token_hash FROM rm_instance_tokens WHERE instance_id = $1',
      [custom.id],
    );
    expect(rows.map((r) => r.token_hash)).not.toContain(sha256('short-custom-0001'));
    expect(await status('short-custom-0001')).toBe(200);
    const generated = await create('generated');
    expect(generated.token.length).toBeGreaterThanOrEqual(43);
  });

  it('still accepts a token stored the old way, and will not hand it to a second instance', async () => {
    const legacy = await create('legacy');
    const legacyToken = await t.zapwire.store.append(
      `token-${sha256('legacy-token-from-before')}`,
      [
        {
          type: 'InstanceTokenAssigned',
          data: {
            at: new Date().toISOString(),
            instanceId: legacy.id,
            tokenHash: sha256('legacy-token-from-before'),
          },
        },
      ],
      { expectedVersion: 'no_stream' },
    );
    await t.zapwire.projections.waitFor(legacyToken.position);
    // Written straight to the store (as an older version did): the read model takes it up a moment later.
    await eventually(async () => (await status('legacy-token-from-before')) === 200, 10_000);
    const again = await t.request('POST', '/instance/create', {
      body: { name: 'copycat', token: 'legacy-token-from-before' },
    });
    expect(again.status).toBe(409);
  });

  it('rotates: the instance itself or the admin, never another instance; the old token stops working', async () => {
    const a = await create('rotating');
    const b = await create('bystander');
    const foreign = await t.request('POST', `/instance/${a.id}/token/rotate`, { apikey: b.token });
    expect(foreign.status).toBe(403);
    const own = await t.request<{ token: string }>('POST', `/instance/${a.id}/token/rotate`, {
      apikey: a.token,
    });
    expect(own.status).toBe(200);
    expect(own.body.token.length).toBeGreaterThanOrEqual(43);
    expect(await status(a.token)).toBe(401);
    expect(await status(own.body.token)).toBe(200);
    const byAdmin = await t.request<{ token: string }>('POST', `/instance/${a.id}/token/rotate`);
    expect(byAdmin.status).toBe(200);
    expect(await status(own.body.token)).toBe(401);
    expect(await status(byAdmin.body.token)).toBe(200);
    expect(await status(b.token)).toBe(200);
    // The read model rebuilt from the log agrees.
    await t.zapwire.projections.rebuild('instances');
    expect(await status(a.token)).toBe(401);
    expect(await status(own.body.token)).toBe(401);
    expect(await status(byAdmin.body.token)).toBe(200);
  });
});

describe('authentication before validation', () => {
  it('answers a wrong key with 401, not with the body validation rule', async () => {
    const r = await t.request<{ error: { code: string } }>('POST', '/instance/create', {
      apikey: 'not-the-admin-key',
      body: { name: 'x', token: 'short' },
    });
    expect(r.status).toBe(401);
    const none = await t.request('POST', '/instance/create', { apikey: null, body: { token: 1 } });
    expect(none.status).toBe(401);
  });
});
