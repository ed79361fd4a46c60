/**
 * The visualizer and the manager on the server side: the diagram from the machine definition, browser
 * sign-in (cookie, CSRF), the live WebSocket fed by the inspection observer, the ring buffer's bound,
 * the forwarder to the REST API, and no third-party URL in any served file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AddressInfo } from 'node:net';
import type { InspectionEvent } from 'xstate';
import { createActor } from 'xstate';
import { instanceMachine } from '../../../machines/instance/index.ts';
import { STATIC_DIR } from '../../../src/http/static-files.ts';
import { BrowserSessions } from '../../../src/visualizer/browser-session.ts';
import { InspectionLog } from '../../../src/visualizer/inspection-log.ts';
import { ADMIN_KEY, eventually, signInManager, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
let base: string;
beforeAll(async () => {
  t = await startTestApp();
  await t.zapwire.app.listen({ port: 0, host: '127.0.0.1' });
  base = `ws://127.0.0.1:${(t.zapwire.app.server.address() as AddressInfo).port}`;
});

/** Opens a WebSocket and collects its messages; rejects with the HTTP status when the upgrade is refused. */
function openSocket(
  path: string,
  headers: Record<string, string>,
  origin?: string,
): Promise<{ ws: WebSocket; messages: unknown[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}${path}`, { headers, ...(origin ? { origin } : {}) });
    const messages: unknown[] = [];
    ws.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString())));
    ws.on('open', () => resolve({ ws, messages }));
    ws.on('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
    ws.on('error', reject);
  });
}
afterAll(async () => {
  await t?.stop();
});

async function signIn(): Promise<{ cookie: string; csrf: string }> {
  const { status, cookie, csrf, setCookie } = await signInManager(t.zapwire.app);
  expect(status).toBe(200);
  expect(setCookie).toMatch(/HttpOnly/);
  expect(setCookie).toMatch(/SameSite=Strict/);
  expect(setCookie).toMatch(/Max-Age=1800/);
  return { cookie, csrf };
}

describe('the diagram', () => {
  it('is SVG rendered from the machine, every state addressable as id="state:<node id>"', async () => {
    const r = await t.request('GET', '/debug/machines/instance.svg');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/image\/svg\+xml/);
    const svg = String(r.body);
    for (const id of [
      'created',
      'disconnected',
      'backoff',
      'session',
      'session.connecting',
      'session.qr',
      'session.open',
      'deleted',
    ])
      expect(svg).toContain(`id="state:instance.${id}"`);
    expect(svg).toMatch(/<g id="state:instance.session" class="cluster"/);
    expect(svg).not.toMatch(/<\?xml/);
    const again = await t.zapwire.app.inject({
      method: 'GET',
      url: '/debug/machines/instance.svg',
      headers: { apikey: ADMIN_KEY, 'if-none-match': String(r.headers['etag']) },
    });
    expect(again.statusCode).toBe(304);
    const dot = await t.request('GET', '/debug/machines/instance.dot');
    expect(String(dot.body)).toMatch(/"instance.session.qr" -> "instance.session.open" \[label="wa.opened"/);
  });

  it('needs the admin key', async () => {
    expect((await t.request('GET', '/debug/machines/instance.svg', { apikey: null })).status).toBe(401);
    await t.request('POST', '/instance/create', { body: { name: 'viz-token', token: 'viz-token-abcdef' } });
    expect(
      (await t.request('GET', '/debug/machines/instance.svg', { apikey: 'viz-token-abcdef' })).status,
    ).toBe(403);
  });
});

describe('browser sign-in', () => {
  it('pages answer 401 with the sign-in form, and the cookie opens them', async () => {
    const anonymous = await t.zapwire.app.inject({ method: 'GET', url: '/manager' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.body).toContain('id="login"');
    expect(anonymous.headers['content-security-policy']).toMatch(/default-src 'self'/);
    const { cookie } = await signIn();
    const page = await t.zapwire.app.inject({ method: 'GET', url: '/manager', headers: { cookie } });
    expect(page.statusCode).toBe(200);
    // opening the page renews the session: a new cookie (the old one is revoked; test/integration/security/manager-session.test.ts)
    const renewed = String(page.headers['set-cookie']).split(';')[0] ?? '';
    expect(renewed).not.toBe(cookie);
    expect(page.body).toContain('id="instances"');
    const viz = await t.zapwire.app.inject({
      method: 'GET',
      url: '/debug/instances/anything',
      headers: { cookie: renewed },
    });
    expect(viz.statusCode).toBe(200);
    expect(viz.body).toContain('id="diagram"');
    const svg = await t.zapwire.app.inject({
      method: 'GET',
      url: '/debug/machines/instance.svg',
      headers: { cookie: renewed },
    });
    expect(svg.statusCode).toBe(200);
  });

  it('refuses a wrong key, a forged or expired cookie, and a key in the URL', async () => {
    const wrong = await t.zapwire.app.inject({
      method: 'POST',
      url: '/manager/session',
      payload: { apikey: 'nope' },
    });
    expect(wrong.statusCode).toBe(401);
    const { cookie } = await signIn();
    const forged = cookie.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect(
      (await t.zapwire.app.inject({ method: 'GET', url: '/manager', headers: { cookie: forged } }))
        .statusCode,
    ).toBe(401);
    expect(
      (await t.zapwire.app.inject({ method: 'GET', url: `/manager?apikey=${ADMIN_KEY}` })).statusCode,
    ).toBe(401);
    const clock = { now: 1_000_000 };
    const sessions = new BrowserSessions(60_000, () => clock.now);
    const issued = sessions.issue();
    expect(sessions.verify(issued.value)).toBeDefined();
    clock.now += 60_001;
    expect(sessions.verify(issued.value)).toBeUndefined();
  });

  it('the forwarder calls the REST API with the cookie and the CSRF header only', async () => {
    const { cookie, csrf } = await signIn();
    const noCsrf = await t.zapwire.app.inject({
      method: 'GET',
      url: '/manager/api/instance/all',
      headers: { cookie },
    });
    expect(noCsrf.statusCode).toBe(403);
    const created = await t.zapwire.app.inject({
      method: 'POST',
      url: '/manager/api/instance/create',
      headers: { cookie, 'x-zapwire-csrf': csrf },
      payload: { name: 'viz-forwarded' },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ name: 'viz-forwarded', state: 'created' });
    const invalid = await t.zapwire.app.inject({
      method: 'POST',
      url: '/manager/api/instance/create',
      headers: { cookie, 'x-zapwire-csrf': csrf },
      payload: { name: 'bad name!' },
    });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json()).toMatchObject({ error: { code: 'ZW_ERR_VALIDATION' } });
    const outside = await t.zapwire.app.inject({
      method: 'GET',
      url: '/manager/api/docs/json',
      headers: { cookie, 'x-zapwire-csrf': csrf },
    });
    expect(outside.statusCode).toBe(400);
    const signedOut = await t.zapwire.app.inject({
      method: 'DELETE',
      url: '/manager/session',
      headers: { cookie },
    });
    expect(String(signedOut.headers['set-cookie'])).toMatch(/Max-Age=0/);
  });
});

describe('live state', () => {
  it('the WebSocket says hello with the current state, then one entry per transition', async () => {
    const created = await t.request('POST', '/instance/create', { body: { name: 'viz-live' } });
    const id = created.body['id'] as string;
    const { cookie } = await signIn();
    const socket = await openSocket(`/debug/instances/${id}/live`, { cookie });
    const messages = socket.messages as Array<{
      type: string;
      current?: { state: string };
      entry?: { event: string; to: string; emitted: string[]; stateIds: string[] };
    }>;
    await eventually(() => messages.find((m) => m.type === 'hello'));
    expect(messages[0]?.current?.state).toBe('created');

    await t.request('POST', '/instance/connect', { body: { instanceName: id } });
    const connection = await eventually(() => t.fake.connection(id));
    connection.issueQr();
    const qr = await eventually(() => messages.find((m) => m.entry?.event === 'wa.qr'));
    expect(qr.entry).toMatchObject({ to: 'session.qr', emitted: ['QrCodeIssued'] });
    connection.scan();
    const open = await eventually(() => messages.find((m) => m.entry?.to === 'session.open'));
    expect(open.entry?.stateIds).toEqual(['instance.session', 'instance.session.open']);
    socket.ws.terminate();

    const state = await t.request<{
      current: { state: string; live: boolean };
      timeline: Array<{ event: string }>;
    }>('GET', `/debug/instances/${id}/state`);
    expect(state.body.current).toMatchObject({ state: 'open', live: true });
    expect(state.body.timeline.map((e) => e.event)).toEqual(
      expect.arrayContaining(['connect', 'wa.qr', 'wa.opened']),
    );
  });

  it('refuses a cookie WebSocket from another origin, and one without credentials', async () => {
    const created = await t.request('POST', '/instance/create', { body: { name: 'viz-origin' } });
    const { cookie } = await signIn();
    await expect(
      openSocket(`/debug/instances/${String(created.body['id'])}/live`, { cookie }, 'https://evil.example'),
    ).rejects.toThrow(/403/);
    await expect(openSocket('/manager/live', {})).rejects.toThrow(/401/);
    const same = await openSocket('/manager/live', { cookie }, base.replace('ws:', 'http:'));
    same.ws.close();
  });

  it('the ring buffer keeps the newest entries only, and forgets deleted instances', () => {
    const log = new InspectionLog(5);
    const actor = createActor(instanceMachine, {
      input: {
        at: '2026-01-01T00:00:00.000Z',
        instanceId: 'ring',
        name: 'ring',
        createdBy: 'admin',
        advancedSettings: {
          alwaysOnline: false,
          rejectCall: false,
          msgRejectCall: '',
          readMessages: false,
          ignoreGroups: false,
          ignoreStatus: false,
        },
        sinks: {
          webhookUrl: null,
          events: ['MESSAGE'],
          rabbitmqEnable: false,
          websocketEnable: false,
          natsEnable: false,
        },
        proxy: null,
      },
      inspect: (event: InspectionEvent) => log.observe('ring', event),
    });
    actor.start();
    const at = '2026-01-01T00:00:01.000Z';
    for (let i = 0; i < 6; i++) {
      actor.send({ type: 'connect', at });
      actor.send({ type: 'disconnect', at });
    }
    const entries = log.entries('ring');
    expect(entries).toHaveLength(5);
    expect(entries.map((e) => e.seq)).toEqual([9, 10, 11, 12, 13]);
    expect(entries.at(-1)).toMatchObject({
      event: 'disconnect',
      from: 'session.connecting',
      to: 'disconnected',
      emitted: ['ConnectionClosed'],
    });
    actor.send({ type: 'delete', at });
    expect(log.trackedInstances()).toBe(0);
  });
});

describe('offline', () => {
  it('no served file refers to another host', () => {
    for (const name of readdirSync(STATIC_DIR)) {
      const text = readFileSync(join(STATIC_DIR, name), 'utf8');
      expect(text, name).not.toMatch(/(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
      expect(text, name).not.toMatch(/\b(?:cdn|unpkg|jsdelivr|googleapis)\b/i);
    }
  });
});
