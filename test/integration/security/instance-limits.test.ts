/**
 * Issue 22 item 6: one tenant cannot fill the disk. Every state-changing route is rate-limited per
 * instance (429 with Retry-After, in each profile's error shape; another instance is unaffected), and an
 * instance's `instance-` stream refuses commands once it gained INSTANCE_EVENTS_PER_DAY events in 24 hours,
 * also after a restart, while what WhatsApp reports and deletes still go through.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type Reply, type TestApp } from '../../support/zapwire.ts';

const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.stop().catch(() => undefined);
});

async function create(t: TestApp, name: string): Promise<{ id: string; token: string }> {
  const token = `${name}-token-0123456789`;
  const created = await t.request('POST', '/instance/create', { body: { name, token } });
  expect(created.status).toBe(201);
  return { id: created.body['id'] as string, token };
}

function statuses(replies: readonly Reply[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const reply of replies) out[reply.status] = (out[reply.status] ?? 0) + 1;
  return out;
}

async function streamLength(t: TestApp, id: string): Promise<number> {
  return t.zapwire.store.streamVersion(`instance-${id}`);
}

describe('rate limits per instance (the defaults)', () => {
  it('84 settings writes in a burst: 30 pass, the rest get 429 with Retry-After; the log holds 30', async () => {
    const t = await startTestApp();
    apps.push(t);
    const noisy = await create(t, 'noisy');
    const quiet = await create(t, 'quiet');
    const before = await streamLength(t, noisy.id);
    const replies: Reply[] = [];
    const started = Date.now();
    for (let i = 0; i < 84; i++)
      replies.push(
        await t.request('PUT', `/instance/${noisy.id}/advanced-settings`, {
          apikey: noisy.token,
          body: { msgRejectCall: `busy ${i}` },
        }),
      );
    // 30 at once, then one more every 2 s (a slow machine may take that long for the burst).
    const passed = replies.filter((r) => r.status === 200).length;
    expect(passed).toBeGreaterThanOrEqual(30);
    expect(passed).toBeLessThanOrEqual(30 + Math.floor((Date.now() - started) / 2_000));
    expect(replies.filter((r) => r.status !== 200).every((r) => r.status === 429)).toBe(true);
    const refused = replies.find((r) => r.status === 429)!;
    expect(refused.body).toMatchObject({
      error: {
        code: 'ZW_ERR_RATE_LIMITED',
        message: expect.stringMatching(/RATE_LIMIT_SETTINGS_PER_MINUTE/),
      },
    });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await streamLength(t, noisy.id)) - before).toBe(passed);
    const other = await t.request('PUT', `/instance/${quiet.id}/advanced-settings`, {
      apikey: quiet.token,
      body: { rejectCall: true },
    });
    expect(other.status).toBe(200);
  });

  it('every route that changes settings takes from the one bucket; another instance is unaffected', async () => {
    // One a minute: nothing refills while the test runs, however slow the machine.
    const t = await startTestApp({ env: { RATE_LIMIT_SETTINGS_PER_MINUTE: '1' } });
    apps.push(t);
    const noisy = await create(t, 'noisy');
    const quiet = await create(t, 'quiet');
    const first = await t.request('PUT', `/instance/${noisy.id}/advanced-settings`, {
      apikey: noisy.token,
      body: { rejectCall: true },
    });
    expect(first.status).toBe(200);
    for (const [method, url, body] of [
      ['PUT', `/instance/${noisy.id}/advanced-settings`, { rejectCall: false }],
      ['PUT', `/instance/${noisy.id}/events`, { subscribe: ['MESSAGE'] }],
      ['POST', `/instance/proxy/${noisy.id}`, { host: 'p.test', port: 1080, protocol: 'socks5' }],
      ['DELETE', `/instance/proxy/${noisy.id}`, undefined],
      ['POST', `/instance/${noisy.id}/token/rotate`, undefined],
      ['POST', `/instance/${noisy.id}/webhook/secret/rotate`, undefined],
    ] as const)
      expect((await t.request(method, url, { body })).status, `${method} ${url}`).toBe(429);
    const other = await t.request('PUT', `/instance/${quiet.id}/advanced-settings`, {
      apikey: quiet.token,
      body: { rejectCall: true },
    });
    expect(other.status).toBe(200);
  });

  it('pairing codes: 5 a minute; connect, disconnect and logout: 30 a minute', async () => {
    const t = await startTestApp();
    apps.push(t);
    const pairing = await create(t, 'pairing');
    const codes: Reply[] = [];
    const pairingStarted = Date.now();
    for (let i = 0; i < 8; i++)
      codes.push(
        await t.request('POST', '/instance/pair', {
          apikey: pairing.token,
          body: { phone: '5511999990000' },
        }),
      );
    const issued = codes.filter((r) => r.status === 200).length;
    expect(issued).toBeGreaterThanOrEqual(5);
    expect(issued).toBeLessThanOrEqual(5 + Math.floor((Date.now() - pairingStarted) / 12_000));
    expect(statuses(codes)[429]).toBe(8 - issued);
    expect(codes.at(-1)!.body).toMatchObject({
      error: { message: expect.stringMatching(/RATE_LIMIT_PAIRING_PER_MINUTE/) },
    });

    const flapping = await create(t, 'flapping');
    const replies: Reply[] = [];
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      replies.push(await t.request('POST', '/instance/connect', { apikey: flapping.token }));
      replies.push(await t.request('POST', '/instance/disconnect', { apikey: flapping.token }));
    }
    const passed = replies.filter((r) => r.status === 200).length;
    expect(passed).toBeGreaterThanOrEqual(30);
    expect(passed).toBeLessThanOrEqual(30 + Math.floor((Date.now() - started) / 2_000));
    expect(statuses(replies)[429]).toBe(40 - passed);
  });

  it('answers 429 in the Evolution GO shape under API_COMPAT=evolution-go', async () => {
    const t = await startTestApp({
      env: { API_COMPAT: 'evolution-go', RATE_LIMIT_SETTINGS_PER_MINUTE: '2' },
    });
    apps.push(t);
    const created = await t.request<{ data: { id: string } }>('POST', '/instance/create', {
      body: { name: 'evo', token: 'evo-token-0123456789' },
    });
    const id = created.body.data.id;
    const replies: Reply[] = [];
    for (let i = 0; i < 3; i++)
      replies.push(
        await t.request('PUT', `/instance/${id}/advanced-settings`, {
          apikey: 'evo-token-0123456789',
          body: { rejectCall: i % 2 === 0 },
        }),
      );
    expect(replies.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(replies[2]!.body).toEqual({ error: expect.stringMatching(/at most 2 a minute/) });
    expect(Number(replies[2]!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });
});

describe('the daily cap of an instance stream', () => {
  it('refuses commands past INSTANCE_EVENTS_PER_DAY, across a restart; WhatsApp and deletes still pass', async () => {
    const env = {
      INSTANCE_EVENTS_PER_DAY: '12',
      RATE_LIMIT_SETTINGS_PER_MINUTE: '0',
      RATE_LIMIT_LIFECYCLE_PER_MINUTE: '0',
    };
    const first = await startTestApp({ env });
    apps.push(first);
    const capped = await create(first, 'capped');
    const replies: Reply[] = [];
    for (let i = 0; i < 20; i++)
      replies.push(
        await first.request('PUT', `/instance/${capped.id}/advanced-settings`, {
          apikey: capped.token,
          body: { msgRejectCall: `n ${i}` },
        }),
      );
    // InstanceCreated is one of the 12.
    expect(statuses(replies)).toEqual({ 200: 11, 429: 9 });
    expect(await streamLength(first, capped.id)).toBe(12);
    const refused = replies.at(-1)!;
    expect(refused.body).toMatchObject({
      error: { code: 'ZW_ERR_RATE_LIMITED', message: expect.stringMatching(/INSTANCE_EVENTS_PER_DAY/) },
    });
    // A day, give or take the seconds the test took.
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(86_000);

    const second = await first.restart();
    apps.push(second);
    const afterRestart = await second.request('POST', '/instance/connect', { apikey: capped.token });
    expect(afterRestart.status).toBe(429);
    // The server's own records are not refused: a delete goes through.
    expect((await second.request('DELETE', `/instance/delete/${capped.id}`)).status).toBe(200);
    await eventually(async () => (await second.request('GET', `/instance/info/${capped.id}`)).status === 404);
  });

  it('records what WhatsApp reports past the cap', async () => {
    const t = await startTestApp({ env: { INSTANCE_EVENTS_PER_DAY: '3' } });
    apps.push(t);
    const busy = await create(t, 'busy');
    expect((await t.request('POST', '/instance/connect', { apikey: busy.token })).status).toBe(200);
    const connection = await eventually(() => t.fake.connection(busy.id));
    // InstanceCreated, ConnectionStarting: the third and fourth come from WhatsApp.
    connection.issueQr();
    connection.scan();
    await eventually(
      async () =>
        (await t.request('GET', '/instance/status', { apikey: busy.token })).body['state'] === 'open',
    );
    expect(await streamLength(t, busy.id)).toBeGreaterThan(3);
    expect((await t.request('POST', '/instance/disconnect', { apikey: busy.token })).status).toBe(429);
  });
});
