/**
 * The lifecycle through HTTP with the fake WhatsApp side: documented errors, reconnect without QR,
 * logout, close codes, the QR cap, the reconnect rate limit, concurrency, restart and delete.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { QRCODE_MAX_COUNT: '3' } });
});
afterAll(async () => {
  await t?.stop();
});

let serial = 0;
async function create(): Promise<{ id: string; name: string; token: string }> {
  const name = `life-${++serial}`;
  const token = `${name}-token-abcdef`;
  const r = await t.request('POST', '/instance/create', { body: { name, token } });
  expect(r.status).toBe(201);
  return { id: r.body['id'] as string, name, token };
}

async function state(token: string): Promise<string> {
  const r = await t.request('GET', '/instance/status', { apikey: token });
  return r.body['state'] as string;
}

async function openPaired(i: { id: string; token: string }): Promise<void> {
  await t.request('POST', '/instance/connect', { apikey: i.token, body: {} });
  const connection = await eventually(() => t.fake.connection(i.id));
  connection.issueQr();
  await eventually(async () => (await state(i.token)) === 'qr');
  connection.scan();
  await eventually(async () => (await state(i.token)) === 'open');
}

function errorOf(body: Record<string, unknown>): { code: string; message: string } {
  return body['error'] as { code: string; message: string };
}

describe('documented errors', () => {
  it('"no active session found" before pairing, "client disconnected" after a disconnect', async () => {
    const i = await create();
    const before = await t.request('POST', '/send/text', {
      apikey: i.token,
      body: { number: '5511999999999', text: 'x' },
    });
    expect(before.status).toBe(409);
    expect(errorOf(before.body).message).toMatch(/^no active session found/);

    await openPaired(i);
    await t.request('POST', '/instance/disconnect', { apikey: i.token });
    const after = await t.request('POST', '/send/text', {
      apikey: i.token,
      body: { number: '5511999999999', text: 'x' },
    });
    expect(after.status).toBe(409);
    expect(errorOf(after.body).message).toMatch(/^client disconnected/);
  });

  it('unknown instance names are a 404 that says where to look', async () => {
    const r = await t.request('GET', '/instance/status?instanceName=nope');
    expect(r.status).toBe(404);
    expect(errorOf(r.body)).toMatchObject({ code: 'ZW_ERR_INSTANCE_NOT_FOUND' });
    expect(errorOf(r.body).message).toMatch(/GET \/instance\/all/);
  });

  it('an admin call without instanceName says how to name the instance', async () => {
    const r = await t.request('GET', '/instance/status');
    expect(r.status).toBe(400);
    expect(errorOf(r.body).message).toMatch(/instanceName/);
  });
});

describe('connect, disconnect, reconnect, logout', () => {
  it('reconnects after a disconnect without a QR, and needs a QR after logout', async () => {
    const i = await create();
    await openPaired(i);
    expect((await t.request('POST', '/instance/disconnect', { apikey: i.token })).body['state']).toBe(
      'disconnected',
    );
    expect(t.fake.liveCount(i.id)).toBe(0);

    const qrsBefore = t.fake
      .connections(i.id)
      .flatMap((c) => c.signals)
      .filter((s) => s.type === 'qr').length;
    const reconnected = await t.request('POST', '/instance/reconnect', { apikey: i.token });
    expect(reconnected.status).toBe(200);
    await eventually(async () => (await state(i.token)) === 'open');
    expect(
      t.fake
        .connections(i.id)
        .flatMap((c) => c.signals)
        .filter((s) => s.type === 'qr').length,
    ).toBe(qrsBefore);

    const limited = await t.request('POST', '/instance/reconnect', { apikey: i.token });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);

    const out = await t.request('POST', '/instance/logout', { apikey: i.token });
    expect(out.body).toMatchObject({ state: 'disconnected', loggedIn: false });
    expect(t.fake.hasSession(i.id)).toBe(false);
    await t.request('POST', '/instance/connect', { apikey: i.token });
    const connection = await eventually(() => t.fake.connection(i.id));
    await new Promise((r) => setTimeout(r, 50));
    expect(await state(i.token)).toBe('connecting');
    connection.issueQr();
    await eventually(async () => (await state(i.token)) === 'qr');
  });

  it.each([
    [401, 'logged_out', false],
    [440, 'replaced', true],
    [403, 'banned', true],
  ])('close code %i ends disconnected (%s) with no reconnect loop', async (code, reason, sessionKept) => {
    const i = await create();
    await openPaired(i);
    const opened = t.fake.openCount(i.id);
    t.fake.live(i.id).closeWith(code);
    await eventually(async () => (await state(i.token)) === 'disconnected');
    await new Promise((r) => setTimeout(r, 400));
    expect(t.fake.openCount(i.id)).toBe(opened);
    const status = await t.request('GET', '/instance/status', { apikey: i.token });
    expect(status.body['lastDisconnect']).toMatchObject({ reason, code });
    expect(t.fake.hasSession(i.id)).toBe(sessionKept);
  });

  it('reconnects by itself after a transient close, and at once after 515', async () => {
    const i = await create();
    await openPaired(i);
    const opened = t.fake.openCount(i.id);
    t.fake.live(i.id).closeWith(428);
    await eventually(() => t.fake.openCount(i.id) === opened + 1, 5_000);
    await eventually(async () => (await state(i.token)) === 'open' && t.fake.liveCount(i.id) === 1, 5_000);
    // The instance log is a projection: under load it may trail the state by a moment.
    await eventually(async () => {
      const logs = await t.request<Array<{ message: string }>>('GET', `/instance/logs/${i.id}`);
      return /connection_lost, code 428\); reconnecting in/.test(logs.body.map((l) => l.message).join('\n'));
    }, 5_000);
    t.fake.live(i.id).closeWith(515);
    await eventually(() => t.fake.openCount(i.id) === opened + 2, 5_000);
    await eventually(async () => (await state(i.token)) === 'open' && t.fake.liveCount(i.id) === 1, 5_000);
    expect(t.fake.maxLiveCount(i.id)).toBe(1);
  });

  it('shows why a connection failed in the instance log', async () => {
    const i = await create();
    await t.request('POST', '/instance/connect', { apikey: i.token });
    const connection = await eventually(() => t.fake.connection(i.id));
    connection.closeWith(null, 'proxy failed (socks5 proxy p.local:1080), not connecting without it');
    const logs = await eventually(async () => {
      const r = await t.request<Array<{ level: string; message: string }>>(
        'GET',
        `/instance/logs/${i.id}?level=WARN`,
      );
      return r.body.find((l) => l.message.includes('proxy failed'));
    });
    expect(logs.message).toMatch(
      /connection_lost, code none\); reconnecting in .*: proxy failed \(socks5 proxy p.local:1080\)/,
    );
    await t.request('POST', '/instance/disconnect', { apikey: i.token });
  });

  it('gives up after QRCODE_MAX_COUNT QR codes (qr_timeout), without a loop', async () => {
    const i = await create();
    await t.request('POST', '/instance/connect', { apikey: i.token });
    const connection = await eventually(() => t.fake.connection(i.id));
    for (let n = 0; n < 4 && connection.state !== 'closed'; n += 1) {
      connection.issueQr();
      await new Promise((r) => setTimeout(r, 30));
    }
    await eventually(async () => (await state(i.token)) === 'disconnected');
    const status = await t.request('GET', '/instance/status', { apikey: i.token });
    expect(status.body['lastDisconnect']).toMatchObject({ reason: 'qr_timeout' });
    const qr = await t.request('GET', '/instance/qr', { apikey: i.token });
    expect(qr.status).toBe(404);
  });

  it('pairs with a code shown as XXXX-XXXX', async () => {
    const i = await create();
    const r = await t.request('POST', '/instance/pair', {
      apikey: i.token,
      body: { phone: '+55 11 99999-9999' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body['pairingCode']).toMatch(/^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
  });

  it('applies advanced settings live, without a reconnect', async () => {
    const i = await create();
    await openPaired(i);
    const opened = t.fake.openCount(i.id);
    const r = await t.request('POST', `/instance/${i.id}/advanced-settings`, {
      apikey: i.token,
      body: { rejectCall: true, msgRejectCall: 'Não atendo chamadas', ignoreGroups: true },
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      rejectCall: true,
      msgRejectCall: 'Não atendo chamadas',
      ignoreGroups: true,
      alwaysOnline: false,
    });
    expect(t.fake.openCount(i.id)).toBe(opened);
    const live = t.fake.live(i.id);
    await eventually(() => live.commands.some((c) => c.type === 'applySettings' && c.settings.rejectCall));
    live.deliver({
      type: 'CallReceived',
      data: {
        at: new Date().toISOString(),
        callId: 'call-1',
        fromJid: '5511777777777@s.whatsapp.net',
        isVideo: false,
        status: 'offer',
        rejected: false,
      },
    });
    await eventually(() => t.fake.sentBy(i.id).some((m) => m.text === 'Não atendo chamadas'));
    expect(live.commands.some((c) => c.type === 'rejectCall' && c.callId === 'call-1')).toBe(true);
    const got = await t.request('GET', `/instance/${i.id}/advanced-settings`, { apikey: i.token });
    expect(got.body['rejectCall']).toBe(true);
  });

  it('keeps the proxy password out of every response and event', async () => {
    const i = await create();
    const r = await t.request('POST', `/instance/proxy/${i.id}`, {
      body: { host: 'proxy.exemplo.com', port: '8080', username: 'usuario', password: 'senha-super-secreta' },
    });
    expect(r.status).toBe(200);
    expect(r.body['message']).toMatch(/reconnect/);
    expect(r.body['proxy']).toMatchObject({
      host: 'proxy.exemplo.com',
      port: 8080,
      protocol: 'http',
      username: 'usuario',
      hasPassword: true,
    });
    const info = await t.request('GET', `/instance/info/${i.id}`);
    expect(JSON.stringify(info.body)).not.toContain('senha-super-secreta');
    const events = await t.zapwire.store.readStream(`instance-${i.id}`);
    expect(JSON.stringify(events)).not.toContain('senha-super-secreta');
    expect((await t.request('DELETE', `/instance/proxy/${i.id}`)).status).toBe(200);
    expect((await t.request('GET', `/instance/info/${i.id}`)).body['proxy']).toBeNull();
  });
});

describe('concurrency', () => {
  it('50 parallel connect/disconnect/logout calls end in one consistent state with at most one live connection', async () => {
    const i = await create();
    await openPaired(i);
    const actions = ['/instance/connect', '/instance/disconnect', '/instance/logout'];
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, n) => t.request('POST', actions[n % 3]!, { apikey: i.token })),
    );
    for (const r of replies) expect(r.status, JSON.stringify(r.body)).toBeLessThan(500);
    expect(t.fake.maxLiveCount(i.id)).toBeLessThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 200));
    const events = await t.zapwire.store.readStream(`instance-${i.id}`);
    expect(events.map((e) => e.streamPosition)).toEqual(events.map((_, n) => n + 1));
    const final = await state(i.token);
    const live = t.fake.liveCount(i.id);
    expect(['connecting', 'qr', 'open', 'disconnected']).toContain(final);
    expect(live).toBe(final === 'disconnected' ? 0 : 1);
  });

  it('concurrent creates with one name: exactly one wins', async () => {
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, n) =>
        t.request('POST', '/instance/create', { body: { name: 'racer', token: `racer-token-${n}-xyz` } }),
      ),
    );
    expect(replies.filter((r) => r.status === 201)).toHaveLength(1);
    expect(replies.filter((r) => r.status === 409)).toHaveLength(9);
    const sameToken = await Promise.all(
      Array.from({ length: 6 }, (_, n) =>
        t.request('POST', '/instance/create', { body: { name: `tok-${n}`, token: 'shared-token-123' } }),
      ),
    );
    expect(sameToken.filter((r) => r.status === 201)).toHaveLength(1);
    expect(
      sameToken.filter((r) => r.status === 409).every((r) => errorOf(r.body).code === 'ZW_ERR_TOKEN_TAKEN'),
    ).toBe(true);
    const names = await t.request<Array<{ name: string }>>('GET', '/instance/all');
    expect(names.body.filter((x) => x.name.startsWith('tok-'))).toHaveLength(1);
  });
});
