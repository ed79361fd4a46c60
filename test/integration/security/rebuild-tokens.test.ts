/**
 * Finding 11: rebuilding the `instances` projection empties its tables and replays the log; until the
 * replay reached a token's event, that token was a 401 (every tenant logged out for the duration).
 * Tokens are now also looked up in the log when the read model does not know them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

const FILLER_EVENTS = 4000;

async function create(name: string): Promise<{ id: string; token: string }> {
  const r = await t.request<{ id: string; token: string }>('POST', '/instance/create', { body: { name } });
  expect(r.status).toBe(201);
  return r.body;
}

async function tokenRows(id: string): Promise<number> {
  const { rows } = await t.zapwire.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM rm_instance_tokens WHERE instance_id = $1',
    [id],
  );
  return rows[0]?.n ?? 0;
}

describe('rebuilding the instances read model', () => {
  it('keeps every token working while the replay has not reached it', async () => {
    const early = await create('rebuild-early');
    // Events the replay must get through before it reaches the later token (revocations of tokens
    // nobody holds: the projection reads them and changes nothing).
    const filler = Array.from({ length: FILLER_EVENTS }, (_, n) => ({
      type: 'InstanceTokenRevoked',
      data: { at: new Date().toISOString(), instanceId: 'nobody', tokenHash: `filler-${n}` },
    }));
    for (let n = 0; n < filler.length; n += 500)
      await t.zapwire.store.append('token-filler', filler.slice(n, n + 500), { expectedVersion: 'any' });
    const late = await create('rebuild-late');

    let rebuilding = true;
    const rebuild = t
      .request<{ equal: boolean }>('POST', '/admin/projections/instances/rebuild')
      .finally(() => (rebuilding = false));
    const statuses = new Map<number, number>();
    let sawGap = false;
    while (rebuilding) {
      const missing = (await tokenRows(late.id)) === 0;
      for (const i of [late, early]) {
        const r = await t.request('GET', '/instance/status', { apikey: i.token });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        expect(r.status, JSON.stringify(r.body)).not.toBe(401);
        // The instance itself answers too: 200, or 503 "catching up" while its row is not back yet.
        expect([200, 503]).toContain(r.status);
      }
      // Authenticated while its row was missing: the window this test is about was really there.
      if (missing && rebuilding) sawGap = true;
    }
    const result = await rebuild;
    expect(result.status).toBe(200);
    expect(result.body.equal).toBe(true);
    expect(sawGap, `the rebuild never showed the gap (statuses ${JSON.stringify([...statuses])})`).toBe(true);
    expect(await tokenRows(late.id)).toBe(1);
  });

  it("still refuses a rotated token and a deleted instance's token when the read model does not know them", async () => {
    const rotated = await create('rebuild-rotated');
    const old = rotated.token;
    const r = await t.request<{ token: string }>('POST', `/instance/${rotated.id}/token/rotate`, {
      apikey: old,
    });
    expect(r.status).toBe(200);
    const gone = await create('rebuild-gone');
    expect((await t.request('DELETE', `/instance/delete/${gone.id}`)).status).toBe(200);
    // With the read model emptied (as in a rebuild), only the log decides.
    await t.zapwire.db.query('DELETE FROM rm_instance_tokens');
    expect((await t.request('GET', '/instance/status', { apikey: old })).status).toBe(401);
    expect((await t.request('GET', '/instance/status', { apikey: gone.token })).status).toBe(401);
    expect((await t.request('GET', '/instance/status', { apikey: r.body.token })).status).toBe(200);
    // Put the read model back for the other tests.
    await t.request('POST', '/admin/projections/instances/rebuild');
    await eventually(async () => (await tokenRows(rotated.id)) === 1);
  });
});
