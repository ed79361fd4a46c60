/**
 * Per-instance proxy through HTTP with real Baileys on the sandbox: a local SOCKS5 proxy (with a
 * password) carries pairing, login and messages; a dead proxy fails closed (no direct connection).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { startE2eApp, eventually, status, waitForQr, waitForState, type E2eApp } from './harness.ts';
import { deadPort, startSocks5Proxy, type Socks5Proxy } from './socks5-proxy.ts';

let sandbox: Sandbox;
let app: E2eApp;
let proxy: Socks5Proxy;

beforeAll(async () => {
  sandbox = await startSandbox();
  proxy = await startSocks5Proxy({ username: 'zapwire', password: 'pr0xy:p@ss' });
  app = await startE2eApp({ server: sandbox });
});

afterAll(async () => {
  await app?.stop();
  await proxy?.close();
  await sandbox?.close();
});

describe('proxy per instance', () => {
  it('pairs, logs in and sends through the SOCKS5 proxy', async () => {
    sandbox.control.createAccount({ phoneNumber: '5511944440001', name: 'Proxied' });
    sandbox.control.createAccount({ phoneNumber: '5511944440002', name: 'Contact' });
    const created = await app.request<{ token: string; id: string }>('POST', '/instance/create', {
      body: {
        name: 'proxied',
        proxy: {
          host: '127.0.0.1',
          port: proxy.port,
          protocol: 'socks5',
          username: 'zapwire',
          password: 'pr0xy:p@ss',
        },
      },
    });
    expect(created.status).toBe(201);
    expect(
      JSON.stringify((await app.request('GET', `/instance/info/${created.body.id}`)).body),
    ).not.toContain('pr0xy');

    await app.request('POST', '/instance/connect', { body: { instanceName: 'proxied' } });
    const qr = await waitForQr(app, 'proxied');
    expect(proxy.tunnels.length).toBeGreaterThanOrEqual(1);
    await sandbox.control.scanQr('5511944440001', qr.code);
    await waitForState(app, 'proxied', 'open');
    // The QR socket and the login socket after 515: both through the tunnel, to the sandbox.
    expect(proxy.tunnels.length).toBeGreaterThanOrEqual(2);
    expect(
      proxy.tunnels.every((t) => t.destination === `127.0.0.1:${sandbox.port}` && t.username === 'zapwire'),
    ).toBe(true);

    const down = proxy.tunnels.reduce((sum, t) => sum + t.bytesDown, 0);
    const sent = await app.request('POST', '/send/text', {
      apikey: created.body.token,
      body: { number: '5511944440002', text: 'via proxy' },
    });
    expect(sent.status).toBe(200);
    await sandbox.control.waitForMessage('5511944440002', { text: 'via proxy' });
    expect(proxy.tunnels.reduce((sum, t) => sum + t.bytesDown, 0)).toBeGreaterThan(down);
  });

  it('a dead proxy fails closed: never open, never a direct connection to WhatsApp', async () => {
    sandbox.control.createAccount({ phoneNumber: '5511944440003', name: 'Dead proxy' });
    const port = await deadPort();
    const created = await app.request<{ id: string }>('POST', '/instance/create', {
      body: { name: 'deadproxy', proxy: { host: '127.0.0.1', port, protocol: 'socks5' } },
    });
    expect(created.status).toBe(201);
    const connectionsBefore = sandbox.control.connectionCount();
    const waitingBefore = sandbox.control.waitingForPairing();
    await app.request('POST', '/instance/connect', { body: { instanceName: 'deadproxy' } });
    const closed = await eventually('the attempt fails', async () => {
      const s = await status(app, 'deadproxy');
      const last = (s as unknown as { lastDisconnect?: { code: number | null } | null }).lastDisconnect;
      return last ? { s, last } : undefined;
    });
    expect(closed.last.code).toBeNull();
    // Several backoff retries later (200 ms base): still through the dead proxy only.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect((await status(app, 'deadproxy')).state).not.toBe('open');
    expect((await status(app, 'deadproxy')).state).not.toBe('qr');
    expect(sandbox.control.connectionCount()).toBe(connectionsBefore);
    expect(sandbox.control.waitingForPairing()).toBe(waitingBefore);

    // Removing the proxy is the way to connect directly, and it is the user's decision.
    await app.request('POST', '/instance/disconnect', { body: { instanceName: 'deadproxy' } });
    expect((await app.request('DELETE', `/instance/proxy/${created.body.id}`)).status).toBe(200);
    await app.request('POST', '/instance/connect', { body: { instanceName: 'deadproxy' } });
    await waitForQr(app, 'deadproxy');
  });
});
