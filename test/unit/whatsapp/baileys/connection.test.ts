/**
 * The connection against a stand-in socket: signal order, close codes, session removal on 401, proxy
 * fail-closed, pairing-code timing, settings applied live. Real Baileys runs in test/e2e/app.
 */
import { eventually } from '../../../support/zapwire.ts';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Boom } from '@hapi/boom';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BaileysEventMap, UserFacingSocketConfig, WAMessage } from '@whiskeysockets/baileys';
import { loadConfig } from '../../../../src/config.ts';
import {
  DEFAULT_ADVANCED_SETTINGS,
  type AdvancedSettings,
  type ProxyView,
} from '../../../../src/domain/events.ts';
import type { WhatsAppSignal } from '../../../../src/whatsapp/port.ts';
import {
  buildBaileysConnector,
  BAILEYS_MIGRATIONS_DIR,
  type BaileysConnector,
} from '../../../../src/whatsapp/baileys/index.ts';
import type { BaileysConnection, SocketLike } from '../../../../src/whatsapp/baileys/connection.ts';
import { openTestPostgres, type TestPostgres } from '../../../support/postgres.ts';

class FakeSocket implements SocketLike {
  readonly emitter = new EventEmitter();
  readonly ws = new EventEmitter();
  user: { id: string; lid?: string; name?: string } | undefined;
  readonly calls: Array<{ method: string; args: unknown[] }> = [];
  ended = false;

  constructor(readonly config: UserFacingSocketConfig) {}

  readonly ev = {
    on: <E extends keyof BaileysEventMap>(event: E, listener: (data: BaileysEventMap[E]) => void) => {
      this.emitter.on(event, listener);
    },
    process: (handler: (events: Partial<BaileysEventMap>) => void) => {
      this.emitter.on('event', handler);
      return () => this.emitter.off('event', handler);
    },
  };

  emit<E extends keyof BaileysEventMap>(event: E, data: BaileysEventMap[E]): void {
    this.emitter.emit(event, data);
    this.emitter.emit('event', { [event]: data });
  }

  qr(code: string): void {
    this.emit('connection.update', { qr: code });
  }

  open(user = { id: '5511988887777:4@s.whatsapp.net', lid: '1234:4@lid', name: 'Phone' }): void {
    this.ws.emit('open');
    this.user = user;
    this.emit('connection.update', { connection: 'open' });
  }

  closeWith(error: Error | undefined): void {
    this.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } });
  }

  async sendMessage(jid: string, content: { text: string }): Promise<WAMessage> {
    this.calls.push({ method: 'sendMessage', args: [jid, content] });
    return { key: { id: 'OUT1', remoteJid: jid, fromMe: true }, messageTimestamp: 1_700_000_000, status: 1 };
  }
  async groupMetadata(jid: string): Promise<{ participants: Array<{ id: string }> }> {
    this.calls.push({ method: 'groupMetadata', args: [jid] });
    return { participants: [{ id: '5511911112222@s.whatsapp.net' }, { id: '5511933334444@s.whatsapp.net' }] };
  }
  async requestPairingCode(phone: string): Promise<string> {
    this.calls.push({ method: 'requestPairingCode', args: [phone] });
    return 'ABCD1234';
  }
  async rejectCall(callId: string, from: string): Promise<void> {
    this.calls.push({ method: 'rejectCall', args: [callId, from] });
  }
  async readMessages(keys: unknown[]): Promise<void> {
    this.calls.push({ method: 'readMessages', args: [keys] });
  }
  async sendPresenceUpdate(type: string, to?: string): Promise<void> {
    this.calls.push({ method: 'sendPresenceUpdate', args: [type, to] });
  }
  async sendNode(node: unknown): Promise<void> {
    this.calls.push({ method: 'sendNode', args: [node] });
  }
  async logout(): Promise<void> {
    this.calls.push({ method: 'logout', args: [] });
    this.closeWith(new Boom('Intentional Logout', { statusCode: 401 }));
  }
  end(): void {
    this.ended = true;
    this.calls.push({ method: 'end', args: [] });
  }
}

let pg: TestPostgres;
let sockets: FakeSocket[];
let passwords: Map<string, string>;

beforeAll(async () => {
  pg = await openTestPostgres({ migrations: [BAILEYS_MIGRATIONS_DIR] });
});
afterAll(async () => {
  await pg.close();
});
beforeEach(async () => {
  await pg.truncate(['wa_auth_state']);
  sockets = [];
  passwords = new Map();
});

async function connector(
  options: { qrTimeoutMs?: number; alwaysOnlineIntervalMs?: number; pairingCodeWaitMs?: number } = {},
): Promise<BaileysConnector> {
  return buildBaileysConnector(
    {
      config: loadConfig({ DATA_DIR: '/tmp/unused' }),
      logger: pino({ level: 'silent' }),
      db: pg.db,
      sessionKey: randomBytes(32),
      proxyPassword: async (id) => passwords.get(id),
    },
    {
      ...options,
      now: () => new Date('2026-01-01T00:00:00.000Z'),
      makeSocket: (config) => {
        const socket = new FakeSocket(config);
        sockets.push(socket);
        return socket;
      },
    },
  );
}

function open(
  c: BaileysConnector,
  {
    proxy = null,
    settings = DEFAULT_ADVANCED_SETTINGS,
  }: { proxy?: ProxyView | null; settings?: AdvancedSettings } = {},
): { connection: BaileysConnection; signals: WhatsAppSignal[] } {
  const signals: WhatsAppSignal[] = [];
  const connection = c.open({ instanceId: 'inst', proxy, settings, paired: false }, (s) =>
    signals.push(s),
  ) as BaileysConnection;
  return { connection, signals };
}

async function socketReady(index = 0): Promise<FakeSocket> {
  for (let i = 0; i < 200 && !sockets[index]; i++) await new Promise((r) => setTimeout(r, 5));
  const socket = sockets[index];
  if (!socket) throw new Error('no socket was made');
  return socket;
}

const tick = () => new Promise((r) => setTimeout(r, 20));

describe('BaileysConnection signals', () => {
  it('reports each QR with Baileys’ lifetimes (60 s first, 20 s later), then opened with a normalised jid', async () => {
    const c = await connector();
    const { signals } = open(c);
    const socket = await socketReady();
    expect(socket.config.markOnlineOnConnect).toBe(false);
    expect(socket.config.emitOwnEvents).toBe(false);
    socket.qr('qr-1');
    socket.qr('qr-2');
    socket.open();
    expect(signals).toEqual([
      { type: 'qr', code: 'qr-1', expiresAt: '2026-01-01T00:01:00.000Z' },
      { type: 'qr', code: 'qr-2', expiresAt: '2026-01-01T00:00:20.000Z' },
      { type: 'opened', jid: '5511988887777@s.whatsapp.net', pushName: 'Phone', lid: '1234@lid' },
    ]);
  });

  it('uses the configured QR lifetime for every QR and passes it to Baileys', async () => {
    const c = await connector({ qrTimeoutMs: 1_500 });
    const { signals } = open(c);
    const socket = await socketReady();
    expect(socket.config.qrTimeout).toBe(1_500);
    socket.qr('a');
    socket.qr('b');
    expect(signals.map((s) => (s.type === 'qr' ? s.expiresAt : ''))).toEqual([
      '2026-01-01T00:00:01.500Z',
      '2026-01-01T00:00:01.500Z',
    ]);
  });

  it('closes with Baileys’ status code, or null for a network error; nothing follows', async () => {
    const c = await connector();
    const first = open(c);
    (await socketReady(0)).closeWith(new Boom('Stream Errored (restart required)', { statusCode: 515 }));
    expect(first.signals).toEqual([
      { type: 'closed', code: 515, message: 'Stream Errored (restart required)' },
    ]);

    const second = open(c);
    const socket = await socketReady(1);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    socket.closeWith(
      new Boom('WebSocket Error (connect ECONNREFUSED 127.0.0.1:1)', { statusCode: 408, data: refused }),
    );
    socket.qr('late');
    socket.emit('messages.upsert', { type: 'notify', messages: [] });
    expect(second.signals).toEqual([
      { type: 'closed', code: null, message: 'WebSocket Error (connect ECONNREFUSED 127.0.0.1:1)' },
    ]);
    expect(c.liveConnections()).toBe(0);
  });

  it('deletes the saved session on 401 before reporting the close', async () => {
    const c = await connector();
    const session = await c.store.open('inst');
    session.creds.me = { id: '5511988887777:4@s.whatsapp.net' };
    session.creds.account = { details: Buffer.from('d') };
    await session.saveCreds();
    session.release();
    expect(await c.store.hasSession('inst')).toBe(true);

    let sessionAtClose: boolean | undefined;
    const signals: WhatsAppSignal[] = [];
    c.open({ instanceId: 'inst', proxy: null, settings: DEFAULT_ADVANCED_SETTINGS, paired: true }, (s) => {
      signals.push(s);
      if (s.type === 'closed') void c.store.hasSession('inst').then((has) => (sessionAtClose = has));
    });
    (await socketReady()).closeWith(new Boom('Connection Failure', { statusCode: 401 }));
    for (let i = 0; i < 100 && sessionAtClose === undefined; i++) await tick();
    expect(signals).toEqual([{ type: 'closed', code: 401, message: 'Connection Failure' }]);
    expect(sessionAtClose).toBe(false);
  });

  it('keeps the session on 440 and 515', async () => {
    const c = await connector();
    const session = await c.store.open('inst');
    session.creds.me = { id: '5511988887777:4@s.whatsapp.net' };
    session.creds.account = { details: Buffer.from('d') };
    await session.saveCreds();
    session.release();
    const { signals } = open(c);
    (await socketReady()).closeWith(new Boom('Stream Errored (conflict)', { statusCode: 440 }));
    await tick();
    expect(signals).toEqual([{ type: 'closed', code: 440, message: 'Stream Errored (conflict)' }]);
    expect(await c.store.hasSession('inst')).toBe(true);
  });

  it('says nothing after close(), ends the socket, and close() is idempotent', async () => {
    const c = await connector();
    const { connection, signals } = open(c);
    const socket = await socketReady();
    socket.qr('q');
    await connection.close();
    await connection.close();
    socket.closeWith(new Boom('Connection Closed', { statusCode: 428 }));
    socket.qr('after');
    expect(signals).toHaveLength(1);
    expect(socket.ended).toBe(true);
    expect(c.liveConnections()).toBe(0);
  });

  it('close() before the socket exists makes no socket at all', async () => {
    const c = await connector();
    const { connection, signals } = open(c);
    await connection.close();
    await tick();
    expect(sockets).toHaveLength(0);
    expect(signals).toEqual([]);
  });

  it('logout() asks WhatsApp to remove the device, deletes the session and reports nothing', async () => {
    const c = await connector();
    const session = await c.store.open('inst');
    session.creds.me = { id: '5511988887777:4@s.whatsapp.net' };
    session.creds.account = { details: Buffer.from('d') };
    await session.saveCreds();
    session.release();
    const { connection, signals } = open(c);
    const socket = await socketReady();
    socket.open();
    await connection.logout();
    expect(socket.calls.map((call) => call.method)).toContain('logout');
    expect(await c.store.hasSession('inst')).toBe(false);
    expect(signals.map((s) => s.type)).toEqual(['opened']);
  });
});

describe('proxy (fails closed)', () => {
  const socks: ProxyView = {
    host: '127.0.0.1',
    port: 1080,
    protocol: 'socks5',
    username: 'u',
    hasPassword: true,
  };

  it('passes the proxy agent to Baileys for the socket and for media fetches', async () => {
    passwords.set('inst', 's3cret');
    const c = await connector();
    open(c, { proxy: socks });
    const socket = await socketReady();
    expect(socket.config.agent?.constructor.name).toBe('SocksProxyAgent');
    expect(socket.config.fetchAgent).toBe(socket.config.agent);
  });

  it('uses a CONNECT agent for http proxies', async () => {
    const c = await connector();
    open(c, { proxy: { host: '127.0.0.1', port: 3128, protocol: 'http', hasPassword: false } });
    const socket = await socketReady();
    expect(socket.config.agent?.constructor.name).toBe('HttpsProxyAgent');
  });

  it('does not connect when the proxy password is missing', async () => {
    const c = await connector();
    const { signals } = open(c, { proxy: socks });
    for (let i = 0; i < 50 && signals.length === 0; i++) await tick();
    expect(sockets).toHaveLength(0);
    expect(signals).toHaveLength(1);
    expect(signals[0]).toMatchObject({ type: 'closed', code: null });
    expect(signals[0]?.type === 'closed' && signals[0].message).toMatch(/proxy/);
    expect(JSON.stringify(signals)).not.toContain('s3cret');
  });

  it('reports a proxy that fails before the WebSocket opens as code null, whatever Baileys says', async () => {
    passwords.set('inst', 's3cret');
    const c = await connector();
    const { signals } = open(c, { proxy: socks });
    const socket = await socketReady();
    socket.closeWith(
      new Boom('WebSocket Error (Socks5 proxy rejected connection - Failure)', { statusCode: 500 }),
    );
    expect(signals).toHaveLength(1);
    expect(signals[0]).toMatchObject({ type: 'closed', code: null });
    expect(signals[0]?.type === 'closed' && signals[0].message).toMatch(
      /^proxy failed \(socks5 proxy 127\.0\.0\.1:1080\)/,
    );
    expect(JSON.stringify(signals)).not.toContain('s3cret');
  });
});

describe('commands', () => {
  it('waits for the pairing stage before asking for a pairing code', async () => {
    const c = await connector();
    const { connection, signals } = open(c);
    const socket = await socketReady();
    const pending = connection.requestPairingCode('+55 11 98888-7777');
    await tick();
    expect(socket.calls).toEqual([]);
    socket.qr('q1');
    await expect(pending).resolves.toBe('ABCD1234');
    expect(socket.calls).toEqual([{ method: 'requestPairingCode', args: ['5511988887777'] }]);
    expect(signals.at(-1)).toEqual({ type: 'pairingCode', code: 'ABCD1234', phone: '5511988887777' });
  });

  it('fails a pairing-code request when the socket closes first, or it never reaches the pairing stage', async () => {
    const c = await connector({ pairingCodeWaitMs: 100 });
    const first = open(c);
    const socket = await socketReady();
    const pending = first.connection.requestPairingCode('5511988887777');
    socket.closeWith(new Boom('Connection Closed', { statusCode: 428 }));
    await expect(pending).rejects.toThrow();
    const second = open(c);
    await socketReady(1);
    await expect(second.connection.requestPairingCode('5511988887777')).rejects.toThrow(/pairing stage/);
  });

  it('sends text, reads, rejects calls and presence only while open', async () => {
    const c = await connector();
    const { connection } = open(c);
    const socket = await socketReady();
    await expect(connection.sendText('5511@s.whatsapp.net', 'x')).rejects.toThrow(/not connected/);
    socket.open();
    await expect(connection.sendText('5511977776666@s.whatsapp.net', 'Olá')).resolves.toEqual({
      id: 'OUT1',
      timestamp: new Date(1_700_000_000_000).toISOString(),
      status: 'PENDING',
    });
    await connection.markRead('1@g.us', ['M1', 'M2'], 'x@s.whatsapp.net');
    await connection.rejectCall('C1', 'y@s.whatsapp.net');
    await connection.sendPresence('composing', 'y@s.whatsapp.net');
    expect(socket.calls.slice(1)).toEqual([
      {
        method: 'readMessages',
        args: [
          [
            { remoteJid: '1@g.us', id: 'M1', fromMe: false, participant: 'x@s.whatsapp.net' },
            { remoteJid: '1@g.us', id: 'M2', fromMe: false, participant: 'x@s.whatsapp.net' },
          ],
        ],
      },
      { method: 'rejectCall', args: ['C1', 'y@s.whatsapp.net'] },
      { method: 'sendPresenceUpdate', args: ['composing', 'y@s.whatsapp.net'] },
    ]);
  });

  it('drops ignored traffic early and applies changed settings live', async () => {
    const c = await connector();
    const { connection, signals } = open(c, {
      settings: { ...DEFAULT_ADVANCED_SETTINGS, ignoreGroups: true },
    });
    const socket = await socketReady();
    socket.open();
    const upsert = (remoteJid: string, id: string) =>
      socket.emit('messages.upsert', {
        type: 'notify',
        messages: [
          { key: { remoteJid, id, participant: 'p@s.whatsapp.net' }, message: { conversation: id } },
        ],
      });
    upsert('1@g.us', 'G1');
    upsert('status@broadcast', 'S1');
    connection.applySettings({ ...DEFAULT_ADVANCED_SETTINGS, ignoreStatus: true });
    upsert('1@g.us', 'G2');
    upsert('status@broadcast', 'S2');
    const texts = signals.flatMap((s) =>
      s.type === 'whatsapp' && s.event.type === 'MessageReceived' ? [s.event.data.text] : [],
    );
    expect(texts).toEqual(['S1', 'G2']);
  });

  it('alwaysOnline announces presence on open and periodically, and stops when switched off', async () => {
    const c = await connector({ alwaysOnlineIntervalMs: 30 });
    const { connection } = open(c, { settings: { ...DEFAULT_ADVANCED_SETTINGS, alwaysOnline: true } });
    const socket = await socketReady();
    expect(socket.config.markOnlineOnConnect).toBe(true);
    socket.open({ id: '5511988887777:4@s.whatsapp.net', lid: '1@lid', name: '' });
    const presences = () => socket.calls.filter((call) => call.method === 'sendNode');
    // On open, then every 30 ms (however late a loaded machine's timers fire).
    await eventually(() => presences().length >= 3, 5_000);
    // No push name yet: Baileys would skip it, so the bare presence node goes out.
    expect(presences()[0]?.args[0]).toEqual({ tag: 'presence', attrs: { type: 'available' } });
    connection.applySettings(DEFAULT_ADVANCED_SETTINGS);
    await tick();
    const count = presences().length;
    expect(presences().at(-1)?.args[0]).toEqual({ tag: 'presence', attrs: { type: 'unavailable' } });
    await new Promise((r) => setTimeout(r, 100));
    expect(presences()).toHaveLength(count);
    await connection.close();
  });
});
