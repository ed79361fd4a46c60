import { describe, expect, it } from 'vitest';
import { DEFAULT_ADVANCED_SETTINGS, type WhatsAppEvent } from '../../../src/domain/events.ts';
import { FakeWhatsAppConnector, DEFAULT_FAKE_ACCOUNT } from '../../../src/whatsapp/fake.ts';
import {
  NotConnectedError,
  type OpenConnectionOptions,
  type WhatsAppSignal,
} from '../../../src/whatsapp/port.ts';

const NOW = new Date('2026-03-01T12:00:00.000Z');

function options(instanceId = 'a', paired = false): OpenConnectionOptions {
  return { instanceId, proxy: null, settings: DEFAULT_ADVANCED_SETTINGS, paired };
}

function setup(config: ConstructorParameters<typeof FakeWhatsAppConnector>[0] = {}) {
  const fake = new FakeWhatsAppConnector({ now: () => NOW, ...config });
  const signals: WhatsAppSignal[] = [];
  const open = (instanceId = 'a') => fake.open(options(instanceId), (s) => signals.push(s));
  return { fake, signals, open };
}

const tick = async () => {
  for (let i = 0; i < 3; i++) await Promise.resolve();
};

describe('FakeWhatsAppConnector', () => {
  it('does nothing by itself without a session; issues QRs with an expiry when told', async () => {
    const { signals, open } = setup({ qrTtlMs: 40_000 });
    const c = open();
    await tick();
    expect(signals).toEqual([]);
    expect(c.issueQr('code-1')).toBe('code-1');
    c.issueQr();
    expect(signals).toEqual([
      { type: 'qr', code: 'code-1', expiresAt: '2026-03-01T12:00:40.000Z' },
      { type: 'qr', code: 'fake-qr-a-1-2', expiresAt: '2026-03-01T12:00:40.000Z' },
    ]);
    expect(c.state).toBe('qr');
    expect(c.qrCount).toBe(2);
  });

  it('autoQr shows the first QR on its own', async () => {
    const { signals, open } = setup({ autoQr: true });
    open();
    expect(signals).toEqual([]);
    await tick();
    expect(signals.map((s) => s.type)).toEqual(['qr']);
  });

  it('remembers the session after a scan: the next connection opens without a QR', async () => {
    const { fake, signals, open } = setup();
    const first = open();
    first.issueQr();
    first.scan(DEFAULT_FAKE_ACCOUNT, { restart: true });
    expect(signals.slice(1)).toEqual([{ type: 'closed', code: 515, message: 'restart required' }]);
    expect(first.live).toBe(false);
    expect(fake.hasSession('a')).toBe(true);
    signals.length = 0;
    const second = open();
    await tick();
    expect(signals).toEqual([
      {
        type: 'opened',
        jid: DEFAULT_FAKE_ACCOUNT.jid,
        pushName: DEFAULT_FAKE_ACCOUNT.pushName,
        lid: DEFAULT_FAKE_ACCOUNT.lid,
      },
    ]);
    expect(second.state).toBe('open');
    expect(second.qrCount).toBe(0);
  });

  it('with autoResume off, a saved session opens only when resumed', async () => {
    const { fake, signals, open } = setup({ autoResume: false });
    fake.saveSession('a', { jid: '1@s.whatsapp.net', pushName: null });
    const c = open();
    await tick();
    expect(signals).toEqual([]);
    c.resume();
    expect(signals).toEqual([{ type: 'opened', jid: '1@s.whatsapp.net', pushName: null, lid: null }]);
  });

  it('a 401 close forgets the session, other codes keep it', () => {
    const { fake, open } = setup();
    fake.saveSession('a');
    open().closeWith(440);
    expect(fake.hasSession('a')).toBe(true);
    open().closeWith(401, 'logged out');
    expect(fake.hasSession('a')).toBe(false);
  });

  it('counts live connections, per instance and at most at once', () => {
    const { fake, open } = setup();
    const a1 = open('a');
    const b1 = open('b');
    expect(fake.liveCount()).toBe(2);
    expect(fake.liveCount('a')).toBe(1);
    void a1.close();
    void a1.close();
    expect(fake.liveCount('a')).toBe(0);
    const a2 = open('a');
    expect(fake.maxLiveCount('a')).toBe(1);
    open('a'); // a bug would do this
    expect(fake.maxLiveCount('a')).toBe(2);
    expect(fake.connection('a')).not.toBe(a2);
    expect(fake.openCount('a')).toBe(3);
    expect(fake.maxLiveCount()).toBe(3);
    void b1.close();
    expect(fake.liveCount('b')).toBe(0);
  });

  it('records texts sent and refuses them unless open', async () => {
    const { fake, open } = setup();
    const c = open();
    await expect(c.sendText('x@s.whatsapp.net', 'hi')).rejects.toBeInstanceOf(NotConnectedError);
    c.issueQr();
    c.scan();
    const sent = await c.sendText('5511911112222@s.whatsapp.net', 'Olá! Primeira mensagem!');
    expect(sent).toEqual({ id: 'FAKE000000000001', timestamp: NOW.toISOString(), status: 'SERVER_ACK' });
    expect(fake.sentBy('a')).toEqual([
      {
        instanceId: 'a',
        to: '5511911112222@s.whatsapp.net',
        text: 'Olá! Primeira mensagem!',
        id: sent.id,
        timestamp: sent.timestamp,
      },
    ]);
    expect(fake.sentBy('b')).toEqual([]);
  });

  it('hands out 8-character pairing codes, also as a signal', async () => {
    const { signals, open } = setup();
    const c = open();
    const code = await c.requestPairingCode('5511999999999');
    expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{8}$/);
    expect(signals).toEqual([{ type: 'pairingCode', code, phone: '5511999999999' }]);
    expect(await c.requestPairingCode('5511999999999')).not.toBe(code);
  });

  it('delivers WhatsApp events and records commands', async () => {
    const { signals, open } = setup();
    const c = open();
    c.scan();
    const event: WhatsAppEvent = {
      type: 'PresenceUpdated',
      data: {
        at: NOW.toISOString(),
        chatJid: 'x@s.whatsapp.net',
        participantJid: 'x@s.whatsapp.net',
        presence: 'available',
      },
    };
    c.deliver(event);
    expect(signals.at(-1)).toEqual({ type: 'whatsapp', event });
    await c.rejectCall('call-1', 'x@s.whatsapp.net');
    await c.markRead('x@s.whatsapp.net', ['m1', 'm2']);
    await c.sendPresence('available');
    c.applySettings({ ...DEFAULT_ADVANCED_SETTINGS, alwaysOnline: true });
    expect(c.commands).toEqual([
      { type: 'rejectCall', callId: 'call-1', fromJid: 'x@s.whatsapp.net' },
      { type: 'markRead', chatJid: 'x@s.whatsapp.net', messageIds: ['m1', 'm2'] },
      { type: 'sendPresence', presence: 'available' },
      { type: 'applySettings', settings: { ...DEFAULT_ADVANCED_SETTINGS, alwaysOnline: true } },
    ]);
    expect(c.settings.alwaysOnline).toBe(true);
  });

  it('logout forgets the session and closes; a closed connection says nothing more', async () => {
    const { fake, signals, open } = setup();
    const c = open();
    c.scan();
    await c.logout();
    expect(fake.hasSession('a')).toBe(false);
    expect(c.live).toBe(false);
    const count = signals.length;
    expect(() => c.issueQr()).toThrow(/closed/);
    expect(signals).toHaveLength(count);
  });

  it('removeSession is recorded and idempotent; nextConnection waits for the next open', async () => {
    const { fake, open } = setup();
    fake.saveSession('a');
    await fake.removeSession('a');
    await fake.removeSession('a');
    expect(fake.removedSessions).toEqual(['a', 'a']);
    expect(fake.hasSession('a')).toBe(false);
    const next = fake.nextConnection('a');
    const c = open('a');
    await expect(next).resolves.toBe(c);
    await expect(fake.nextConnection('a')).resolves.toBe(c);
    expect(() => fake.live('z')).toThrow(/no live connection/);
  });
});
