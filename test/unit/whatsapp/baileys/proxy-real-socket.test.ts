/**
 * Fail-closed with the real Baileys socket: a dead or refusing proxy ends in `closed` (code null, a
 * message naming the proxy), and the WhatsApp server never sees a direct connection. A working proxy
 * carries the socket (the server sees the connection come through the tunnel).
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../../src/config.ts';
import { DEFAULT_ADVANCED_SETTINGS, type ProxyView } from '../../../../src/domain/events.ts';
import type { WhatsAppSignal } from '../../../../src/whatsapp/port.ts';
import { buildBaileysConnector, type BaileysConnector } from '../../../../src/whatsapp/baileys/index.ts';
import { openTestPostgres, type TestPostgres } from '../../../support/postgres.ts';
import { deadPort, startSocks5Proxy, type Socks5Proxy } from '../../../e2e/app/socks5-proxy.ts';

let pg: TestPostgres;
let server: WebSocketServer;
let serverPort: number;
let direct: string[];
let connector: BaileysConnector;
const passwords = new Map<string, string>();

beforeAll(async () => {
  pg = await openTestPostgres();
  direct = [];
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  serverPort = (server.address() as { port: number }).port;
  // Stands in for WhatsApp: it only records who connected, then hangs up.
  server.on('connection', (socket, request) => {
    direct.push(`${request.socket.remoteAddress}:${request.socket.remotePort}`);
    socket.close();
  });
  connector = await buildBaileysConnector(
    {
      config: loadConfig({
        DATA_DIR: '/tmp/unused',
        WA_WEBSOCKET_URL: `ws://127.0.0.1:${serverPort}/ws/chat`,
        WA_NOISE_ROOT_PUBLIC_KEY: randomBytes(32).toString('base64'),
      }),
      logger: pino({ level: 'silent' }),
      db: pg.db,
      sessionKey: randomBytes(32),
      proxyPassword: async (id) => passwords.get(id),
    },
    { connectTimeoutMs: 3_000, baileysLogLevel: 'silent' },
  );
});

afterAll(async () => {
  await connector?.closeAll();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await pg.close();
});

async function attempt(
  instanceId: string,
  proxy: ProxyView,
): Promise<Extract<WhatsAppSignal, { type: 'closed' }>> {
  return new Promise((resolve) => {
    connector.open({ instanceId, proxy, settings: DEFAULT_ADVANCED_SETTINGS, paired: false }, (signal) => {
      if (signal.type === 'closed') resolve(signal);
    });
  });
}

describe('proxy with the real Baileys socket', () => {
  it('a dead SOCKS5 proxy closes with code null and no direct connection', async () => {
    const port = await deadPort();
    const closed = await attempt('dead', { host: '127.0.0.1', port, protocol: 'socks5', hasPassword: false });
    expect(closed.code).toBeNull();
    expect(closed.message).toMatch(new RegExp(`^proxy failed \\(socks5 proxy 127\\.0\\.0\\.1:${port}\\)`));
    expect(direct).toEqual([]);
  });

  it('a dead HTTP proxy closes the same way', async () => {
    const port = await deadPort();
    const closed = await attempt('dead-http', {
      host: '127.0.0.1',
      port,
      protocol: 'http',
      hasPassword: false,
    });
    expect(closed.code).toBeNull();
    expect(closed.message).toMatch(/^proxy failed \(http proxy/);
    expect(direct).toEqual([]);
  });

  describe('with a live SOCKS5 proxy that wants a password', () => {
    let proxy: Socks5Proxy;
    beforeAll(async () => {
      proxy = await startSocks5Proxy({ username: 'zap', password: 'p@ss:word' });
    });
    afterAll(async () => {
      await proxy.close();
    });

    it('refused credentials close with code null and nothing reaches the server', async () => {
      passwords.set('wrong', 'nope');
      const closed = await attempt('wrong', {
        host: '127.0.0.1',
        port: proxy.port,
        protocol: 'socks5',
        username: 'zap',
        hasPassword: true,
      });
      expect(closed.code).toBeNull();
      expect(closed.message).toMatch(/^proxy failed/);
      expect(closed.message).not.toContain('nope');
      expect(proxy.refused).toBe(1);
      expect(direct).toEqual([]);
    });

    it('the right credentials carry the socket through the tunnel', async () => {
      passwords.set('right', 'p@ss:word');
      await attempt('right', {
        host: '127.0.0.1',
        port: proxy.port,
        protocol: 'socks5',
        username: 'zap',
        hasPassword: true,
      });
      expect(proxy.tunnels).toHaveLength(1);
      expect(proxy.tunnels[0]).toMatchObject({ destination: `127.0.0.1:${serverPort}`, username: 'zap' });
      expect(proxy.tunnels[0]!.bytesUp).toBeGreaterThan(0);
      // The server saw exactly one connection, and it came from the proxy's side of the tunnel.
      expect(direct).toHaveLength(1);
    });
  });
});
