/** One or more examples per row of the transition table (machines/instance/machine.ts). */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { Harness, INSTANCE_ID, dataOf, typesOf } from './harness.ts';
import { apiStateOf, decide, instanceMachine, RECONNECT_CAP_MS } from '../../../machines/instance/index.ts';
import {
  DEFAULT_ADVANCED_SETTINGS,
  DEFAULT_SINK_SETTINGS,
  type InstanceEvent,
} from '../../../src/domain/events.ts';

const ACCOUNT = { jid: '5511988887777@s.whatsapp.net', pushName: 'João Silva', lid: '42@lid' };

/** A harness whose instance is paired and open. */
function openInstance(config?: { qrMaxCount?: number; stableOpenMs?: number }): Harness {
  const h = new Harness(config ? { config } : {});
  h.dispatch({ type: 'connect' });
  h.onConnection((c) => c.issueQr());
  h.onConnection((c) => c.scan(ACCOUNT));
  expect(h.api()).toBe('open');
  return h;
}

/** A harness whose instance paired once and is now disconnected (session kept). */
function pairedDisconnected(): Harness {
  const h = openInstance();
  h.dispatch({ type: 'disconnect' });
  expect(h.api()).toBe('disconnected');
  return h;
}

describe('created / disconnected → connect / reconnect → connecting', () => {
  it('connect from created opens one socket, not paired, and records ConnectionStarting', () => {
    const h = new Harness();
    expect(h.api()).toBe('created');
    const emitted = h.dispatch({ type: 'connect' });
    expect(emitted).toEqual([
      { type: 'ConnectionStarting', data: { at: h.at(), trigger: 'connect', attempt: 1 } },
    ]);
    expect(h.api()).toBe('connecting');
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(1);
    expect(h.fake.live(INSTANCE_ID).options).toMatchObject({
      instanceId: INSTANCE_ID,
      paired: false,
      proxy: null,
    });
    h.expectFoldMatches();
  });

  it('reconnect of a paired instance logs in with the saved session, without a QR', async () => {
    const h = pairedDisconnected();
    const emitted = h.dispatch({ type: 'reconnect' });
    expect(dataOf(emitted, 'ConnectionStarting').trigger).toBe('reconnect');
    expect(h.fake.live(INSTANCE_ID).options.paired).toBe(true);
    const opened = h.onConnection((c) => c.resume());
    expect(typesOf(opened)).toEqual(['InstanceOpened']);
    expect(h.api()).toBe('open');
    expect(h.fake.connections(INSTANCE_ID).at(-1)?.qrCount).toBe(0);
    h.expectFoldMatches();
  });

  it('reconnect without a saved session behaves as connect', () => {
    const h = new Harness();
    const emitted = h.dispatch({ type: 'reconnect' });
    expect(dataOf(emitted, 'ConnectionStarting').trigger).toBe('connect');
    expect(h.api()).toBe('connecting');
  });

  it('connect while already connecting or open records nothing and keeps the socket', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    expect(h.dispatch({ type: 'connect' })).toEqual([]);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(1);
    const o = openInstance();
    expect(o.dispatch({ type: 'connect' })).toEqual([]);
    expect(o.api()).toBe('open');
  });
});

describe('connecting → QR issued → qr', () => {
  it('the first QR has count 1, rotations count 2, 3 …', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    const first = h.onConnection((c) => c.issueQr('qr-1'));
    expect(first).toEqual([
      { type: 'QrCodeIssued', data: { at: h.at(), code: 'qr-1', expiresAt: expect.any(String), count: 1 } },
    ]);
    expect(h.api()).toBe('qr');
    const second = h.onConnection((c) => c.issueQr('qr-2'));
    expect(dataOf(second, 'QrCodeIssued').count).toBe(2);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(1);
    h.expectFoldMatches();
  });

  it('the count starts again with each connection attempt', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    h.onConnection((c) => c.issueQr());
    h.onConnection((c) => c.issueQr());
    h.dispatch({ type: 'disconnect' });
    h.dispatch({ type: 'connect' });
    expect(
      dataOf(
        h.onConnection((c) => c.issueQr()),
        'QrCodeIssued',
      ).count,
    ).toBe(1);
  });
});

describe('qr → pairing code requested → qr (and in connecting)', () => {
  it('in qr: the request reaches the socket and the code is recorded', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    h.onConnection((c) => c.issueQr());
    const before = h.events.length;
    // The command itself records nothing: the code is recorded when the socket reports it.
    expect(h.dispatch({ type: 'requestPairingCode', phone: '5511999999999' })).toEqual([]);
    const recorded = h.events.slice(before) as InstanceEvent[];
    expect(typesOf(recorded)).toEqual(['PairingCodeIssued']);
    const { code, phone } = dataOf(recorded, 'PairingCodeIssued');
    expect(phone).toBe('5511999999999');
    expect(code).toMatch(/^[0-9A-Z]{8}$/);
    expect(h.fake.live(INSTANCE_ID).commands).toContainEqual({ type: 'requestPairingCode', phone, code });
    expect(h.api()).toBe('qr');
    h.expectFoldMatches();
  });

  it('in connecting: works as soon as the socket is up, before any QR', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    h.dispatch({ type: 'requestPairingCode', phone: '5511999999999' });
    expect(h.events.at(-1)).toMatchObject({ type: 'PairingCodeIssued' });
    expect(h.api()).toBe('connecting');
    h.expectFoldMatches();
  });

  it('is ignored where there is no socket to ask', () => {
    const h = new Harness();
    expect(h.dispatch({ type: 'requestPairingCode', phone: '5511999999999' })).toEqual([]);
    expect(h.fake.openCount()).toBe(0);
  });
});

describe('connecting, qr → opened → open', () => {
  it('from qr: jid and push name recorded, the instance is paired', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    h.onConnection((c) => c.issueQr());
    const emitted = h.onConnection((c) => c.scan(ACCOUNT));
    expect(emitted).toEqual([
      {
        type: 'InstanceOpened',
        data: { at: h.at(), jid: ACCOUNT.jid, pushName: 'João Silva', lid: '42@lid' },
      },
    ]);
    expect(h.api()).toBe('open');
    expect(h.context).toMatchObject({
      paired: true,
      jid: ACCOUNT.jid,
      pushName: 'João Silva',
      lid: '42@lid',
    });
    expect(h.fake.openCount(INSTANCE_ID)).toBe(1); // the socket survived QR → open
    h.expectFoldMatches();
  });

  it('from connecting (saved session)', () => {
    const h = pairedDisconnected();
    h.dispatch({ type: 'connect' });
    expect(typesOf(h.onConnection((c) => c.resume()))).toEqual(['InstanceOpened']);
    expect(h.api()).toBe('open');
  });
});

describe('qr → QR attempts exhausted → disconnected (qr_timeout, no loop)', () => {
  it('the QR after qrMaxCount is not shown; the socket closes and nothing reconnects', () => {
    const h = new Harness({ config: { qrMaxCount: 3 } });
    h.dispatch({ type: 'connect' });
    for (let i = 1; i <= 3; i++)
      expect(
        dataOf(
          h.onConnection((c) => c.issueQr()),
          'QrCodeIssued',
        ).count,
      ).toBe(i);
    const emitted = h.onConnection((c) => c.issueQr());
    expect(emitted).toEqual([
      {
        type: 'ConnectionClosed',
        data: { at: h.at(), code: null, reason: 'qr_timeout', willReconnect: false, retryInMs: null },
      },
    ]);
    expect(h.api()).toBe('disconnected');
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    h.advance(RECONNECT_CAP_MS * 4);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(1);
    h.expectFoldMatches();
  });

  it('defaults to 5 QR codes', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    for (let i = 0; i < 5; i++) h.onConnection((c) => c.issueQr());
    expect(h.api()).toBe('qr');
    h.onConnection((c) => c.issueQr());
    expect(h.api()).toBe('disconnected');
  });

  it("a 408 while showing a QR (Baileys' 'QR refs attempts ended') is a qr_timeout too", () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    h.onConnection((c) => c.issueQr());
    const emitted = h.onConnection((c) => c.closeWith(408, 'QR refs attempts ended'));
    expect(dataOf(emitted, 'ConnectionClosed')).toMatchObject({
      code: 408,
      reason: 'qr_timeout',
      willReconnect: false,
    });
    expect(h.api()).toBe('disconnected');
    h.advance(RECONNECT_CAP_MS * 4);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(1);
  });
});

describe('open, connecting (and qr) → closed 515 → connecting at once', () => {
  it.each(['connecting', 'qr', 'open'] as const)(
    'from %s: a new socket at once, the old one closed',
    (from) => {
      const h = from === 'open' ? openInstance() : new Harness();
      if (from !== 'open') h.dispatch({ type: 'connect' });
      if (from === 'qr') h.onConnection((c) => c.issueQr());
      const attempt = h.context.reconnectAttempt;
      const old = h.fake.live(INSTANCE_ID);
      const emitted = h.onConnection((c) => c.closeWith(515));
      expect(emitted).toEqual([
        {
          type: 'ConnectionClosed',
          data: { at: h.at(), code: 515, reason: 'restart_required', willReconnect: true, retryInMs: 0 },
        },
        { type: 'ConnectionStarting', data: { at: h.at(), trigger: 'restart', attempt: attempt + 1 } },
      ]);
      expect(h.api()).toBe('connecting');
      expect(old.live).toBe(false);
      expect(h.fake.liveCount(INSTANCE_ID)).toBe(1);
      expect(h.fake.maxLiveCount(INSTANCE_ID)).toBe(1);
      h.expectFoldMatches();
    },
  );

  it('pairing: scan → 515 → the next socket logs in with the new session', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    h.onConnection((c) => c.issueQr());
    h.onConnection((c) => c.scan(ACCOUNT, { restart: true }));
    expect(h.api()).toBe('connecting');
    h.onConnection((c) => c.resume());
    expect(h.api()).toBe('open');
    expect(h.context.jid).toBe(ACCOUNT.jid);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(2);
  });
});

describe('open, connecting → closed transient → connecting (backoff)', () => {
  it.each([428, 408, 500, 503, null, 411])('close %s: backoff with no socket, then a new socket', (code) => {
    const h = openInstance();
    const emitted = h.onConnection((c) => c.closeWith(code));
    expect(typesOf(emitted)).toEqual(['ConnectionClosed', 'ConnectionStarting']);
    const closed = dataOf(emitted, 'ConnectionClosed');
    expect(closed).toMatchObject({ code, reason: 'connection_lost', willReconnect: true });
    expect(dataOf(emitted, 'ConnectionStarting')).toMatchObject({ trigger: 'retry', attempt: 2 });
    expect(h.snapshot.value).toBe('backoff');
    expect(h.api()).toBe('connecting');
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    const retryInMs = closed.retryInMs ?? -1;
    expect(retryInMs).toBeGreaterThanOrEqual(2_000);
    expect(retryInMs).toBeLessThanOrEqual(2_500);
    h.advance(retryInMs - 1);
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    h.advance(1);
    expect(h.snapshot.value).toEqual({ session: 'connecting' });
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(1);
    h.expectFoldMatches();
  });

  it('from connecting too, and the delay grows exponentially to the 5 minute cap', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    const delays: number[] = [];
    for (let i = 0; i < 12; i++) {
      const closed = dataOf(
        h.onConnection((c) => c.closeWith(428)),
        'ConnectionClosed',
      );
      delays.push(closed.retryInMs ?? 0);
      h.advance(closed.retryInMs ?? 0);
      expect(h.api()).toBe('connecting');
    }
    for (let i = 1; i < 8; i++) expect(delays[i]).toBeGreaterThan(delays[i - 1] ?? 0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(RECONNECT_CAP_MS);
    expect(delays.at(-1)).toBeGreaterThanOrEqual(RECONNECT_CAP_MS * 0.75);
    expect(h.context.reconnectAttempt).toBe(12);
    h.expectFoldMatches();
  });

  it('an open that lasted stableOpenMs resets the backoff; a short one does not', () => {
    const h = openInstance({ stableOpenMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      const closed = dataOf(
        h.onConnection((c) => c.closeWith(428)),
        'ConnectionClosed',
      );
      h.advance(closed.retryInMs ?? 0);
      h.onConnection((c) => c.resume());
      h.advance(1_000); // a short open
    }
    expect(h.context.reconnectAttempt).toBe(3);
    h.advance(60_000);
    const emitted = h.onConnection((c) => c.closeWith(428));
    expect(dataOf(emitted, 'ConnectionStarting').attempt).toBe(2);
    expect(h.context.reconnectAttempt).toBe(1);
    h.expectFoldMatches();
  });

  it('uses the injected delay function and records what it returned', () => {
    const h = new Harness({ reconnectDelay: ({ context }) => 1_000 * context.reconnectAttempt + 7 });
    h.dispatch({ type: 'connect' });
    const first = dataOf(
      h.onConnection((c) => c.closeWith(503)),
      'ConnectionClosed',
    );
    expect(first.retryInMs).toBe(1_007);
    h.advance(1_006);
    expect(h.snapshot.value).toBe('backoff');
    h.advance(1);
    expect(h.snapshot.value).toEqual({ session: 'connecting' });
    expect(
      dataOf(
        h.onConnection((c) => c.closeWith(503)),
        'ConnectionClosed',
      ).retryInMs,
    ).toBe(2_007);
  });

  it('reconnect during the backoff dials at once', () => {
    const h = openInstance();
    h.onConnection((c) => c.closeWith(428));
    const emitted = h.dispatch({ type: 'reconnect' });
    expect(dataOf(emitted, 'ConnectionStarting')).toMatchObject({ trigger: 'reconnect', attempt: 1 });
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(1);
    h.expectFoldMatches();
  });
});

describe('any live → closed 401 / 440 / 403 → disconnected, never by itself again', () => {
  it.each(['connecting', 'qr', 'open'] as const)(
    '401 from %s: session removed, the next connect needs a QR',
    (from) => {
      const h = from === 'open' ? openInstance() : pairedDisconnected();
      if (from !== 'open') h.dispatch({ type: 'connect' });
      if (from === 'qr') h.onConnection((c) => c.issueQr());
      const emitted = h.onConnection((c) => c.closeWith(401));
      expect(emitted).toEqual([
        {
          type: 'ConnectionClosed',
          data: { at: h.at(), code: 401, reason: 'logged_out', willReconnect: false, retryInMs: null },
        },
        { type: 'SessionRemoved', data: { at: h.at(), reason: 'logged_out' } },
      ]);
      expect(h.api()).toBe('disconnected');
      expect(h.context).toMatchObject({ paired: false, jid: null, pushName: null });
      h.advance(RECONNECT_CAP_MS * 4);
      expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
      h.dispatch({ type: 'connect' });
      expect(h.fake.live(INSTANCE_ID).options.paired).toBe(false);
      expect(h.fake.hasSession(INSTANCE_ID)).toBe(false);
      h.expectFoldMatches();
    },
  );

  it.each([
    [440, 'replaced'],
    [403, 'banned'],
  ] as const)('%s → disconnected (%s), session kept, no reconnect however long we wait', (code, reason) => {
    const h = openInstance();
    const emitted = h.onConnection((c) => c.closeWith(code));
    expect(emitted).toEqual([
      { type: 'ConnectionClosed', data: { at: h.at(), code, reason, willReconnect: false, retryInMs: null } },
    ]);
    expect(h.api()).toBe('disconnected');
    expect(h.context.paired).toBe(true);
    h.advance(RECONNECT_CAP_MS * 10);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(1);
    expect(h.api()).toBe('disconnected');
    h.expectFoldMatches();
  });
});

describe('open, connecting, qr → disconnect → disconnected (session kept)', () => {
  it.each(['connecting', 'qr', 'open', 'backoff'] as const)('from %s', (from) => {
    const h = from === 'open' || from === 'backoff' ? openInstance() : new Harness();
    if (from === 'connecting' || from === 'qr') h.dispatch({ type: 'connect' });
    if (from === 'qr') h.onConnection((c) => c.issueQr());
    if (from === 'backoff') h.onConnection((c) => c.closeWith(428));
    const emitted = h.dispatch({ type: 'disconnect' });
    expect(emitted).toEqual([
      {
        type: 'ConnectionClosed',
        data: { at: h.at(), code: null, reason: 'user_disconnect', willReconnect: false, retryInMs: null },
      },
    ]);
    expect(h.api()).toBe('disconnected');
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    expect(h.fake.connections(INSTANCE_ID).flatMap((c) => c.commands)).not.toContainEqual({ type: 'logout' });
    h.advance(RECONNECT_CAP_MS * 2);
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    h.expectFoldMatches();
  });

  it('a paired instance reconnects afterwards without a QR', () => {
    const h = pairedDisconnected();
    expect(h.fake.hasSession(INSTANCE_ID)).toBe(true);
    h.dispatch({ type: 'reconnect' });
    h.onConnection((c) => c.resume());
    expect(h.api()).toBe('open');
  });

  it('from created or disconnected it records nothing', () => {
    const h = new Harness();
    expect(h.dispatch({ type: 'disconnect' })).toEqual([]);
    expect(h.api()).toBe('created');
  });
});

describe('any → logout → disconnected, session removed', () => {
  it.each(['created', 'disconnected', 'connecting', 'qr', 'open', 'backoff'] as const)('from %s', (from) => {
    const h = ['open', 'backoff', 'disconnected'].includes(from) ? openInstance() : new Harness();
    if (from === 'connecting' || from === 'qr') h.dispatch({ type: 'connect' });
    if (from === 'qr') h.onConnection((c) => c.issueQr());
    if (from === 'backoff') h.onConnection((c) => c.closeWith(500));
    if (from === 'disconnected') h.dispatch({ type: 'disconnect' });
    const socket = h.fake.connection(INSTANCE_ID);
    const emitted = h.dispatch({ type: 'logout' });
    expect(emitted).toEqual([
      {
        type: 'ConnectionClosed',
        data: { at: h.at(), code: null, reason: 'user_logout', willReconnect: false, retryInMs: null },
      },
      { type: 'SessionRemoved', data: { at: h.at(), reason: 'user_logout' } },
    ]);
    expect(h.api()).toBe('disconnected');
    expect(h.context.paired).toBe(false);
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    expect(h.fake.hasSession(INSTANCE_ID)).toBe(false);
    // A live socket is logged out on WhatsApp before it closes.
    if (socket) expect(socket.commands).toContainEqual({ type: 'logout' });
    h.expectFoldMatches();
  });
});

describe('any → delete → deleted (final)', () => {
  it.each(['created', 'disconnected', 'connecting', 'qr', 'open', 'backoff'] as const)('from %s', (from) => {
    const h = ['open', 'backoff', 'disconnected'].includes(from) ? openInstance() : new Harness();
    if (from === 'connecting' || from === 'qr') h.dispatch({ type: 'connect' });
    if (from === 'qr') h.onConnection((c) => c.issueQr());
    if (from === 'backoff') h.onConnection((c) => c.closeWith(500));
    if (from === 'disconnected') h.dispatch({ type: 'disconnect' });
    const paired = h.context.paired;
    const socket = h.fake.connection(INSTANCE_ID);
    const emitted = h.dispatch({ type: 'delete' });
    expect(emitted).toEqual([
      ...(paired ? [{ type: 'SessionRemoved', data: { at: h.at(), reason: 'deleted' } }] : []),
      { type: 'InstanceDeleted', data: { at: h.at(), by: 'admin' } },
    ]);
    expect(h.api()).toBe('deleted');
    expect(h.snapshot.status).toBe('done');
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    if (socket && paired) expect(socket.commands).toContainEqual({ type: 'logout' });
    if (socket && !paired) expect(socket.commands).not.toContainEqual({ type: 'logout' });
    // Final: nothing moves it any more, and nothing is recorded.
    for (const type of ['connect', 'reconnect', 'logout', 'delete', 'restore', 'removeProxy'] as const) {
      expect(h.dispatch({ type })).toEqual([]);
    }
    h.advance(RECONNECT_CAP_MS * 2);
    expect(h.api()).toBe('deleted');
    expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    h.expectFoldMatches();
  });
});

describe('settings, sinks and proxy are accepted in every non-final state', () => {
  const states = ['created', 'disconnected', 'connecting', 'qr', 'open', 'backoff'] as const;
  it.each(states)('in %s', (from) => {
    const h = ['open', 'backoff', 'disconnected'].includes(from) ? openInstance() : new Harness();
    if (from === 'connecting' || from === 'qr') h.dispatch({ type: 'connect' });
    if (from === 'qr') h.onConnection((c) => c.issueQr());
    if (from === 'backoff') h.onConnection((c) => c.closeWith(500));
    if (from === 'disconnected') h.dispatch({ type: 'disconnect' });
    const api = h.api();

    const settings = h.dispatch({
      type: 'changeAdvancedSettings',
      settings: { rejectCall: true, msgRejectCall: 'só texto' },
    });
    expect(settings).toEqual([
      {
        type: 'AdvancedSettingsChanged',
        data: {
          at: h.at(),
          settings: { ...DEFAULT_ADVANCED_SETTINGS, rejectCall: true, msgRejectCall: 'só texto' },
        },
      },
    ]);
    const sinks = h.dispatch({
      type: 'configureSinks',
      sinks: { webhookUrl: 'https://example.test/hook', events: ['ALL'] },
    });
    expect(dataOf(sinks, 'EventSinksConfigured').sinks).toEqual({
      ...DEFAULT_SINK_SETTINGS,
      webhookUrl: 'https://example.test/hook',
      events: ['ALL'],
    });
    const proxy = { host: 'proxy.example.test', port: 1080, protocol: 'socks5' as const, hasPassword: true };
    expect(h.dispatch({ type: 'configureProxy', proxy })).toEqual([
      { type: 'ProxyConfigured', data: { at: h.at(), proxy } },
    ]);
    expect(h.context.proxy).toEqual(proxy);
    expect(h.dispatch({ type: 'removeProxy' })).toEqual([{ type: 'ProxyRemoved', data: { at: h.at() } }]);
    expect(h.context.proxy).toBeNull();
    expect(h.api()).toBe(api);
    // Applied live, without reconnecting, when there is a socket.
    const socket = h.fake.connection(INSTANCE_ID);
    if (socket) expect(socket.settings).toEqual(h.context.advancedSettings);
    expect(h.fake.openCount(INSTANCE_ID)).toBe(from === 'created' ? 0 : 1);
    h.expectFoldMatches();
  });

  it('a configured proxy is used by the next connection', () => {
    const h = new Harness();
    const proxy = {
      host: 'p.example.test',
      port: 8080,
      protocol: 'http' as const,
      username: 'u',
      hasPassword: false,
    };
    h.dispatch({ type: 'configureProxy', proxy });
    h.dispatch({ type: 'connect' });
    expect(h.fake.live(INSTANCE_ID).options.proxy).toEqual(proxy);
  });
});

describe('signals the machine must ignore', () => {
  it('a signal from an older socket is ignored', () => {
    const h = new Harness();
    h.dispatch({ type: 'connect' });
    const stale = {
      type: 'wa.opened',
      jid: 'x@s.whatsapp.net',
      pushName: null,
      at: h.at(),
      connectionSeq: 0,
    } as const;
    expect(decide(h.snapshot, stale).emitted).toEqual([]);
    expect(decide(h.snapshot, { ...stale, connectionSeq: h.context.connectionSeq }).emitted).toHaveLength(1);
    const staleClose = { type: 'wa.closed', code: 401, at: h.at(), connectionSeq: 0 } as const;
    const decided = decide(h.snapshot, staleClose);
    expect(decided.emitted).toEqual([]);
    expect(apiStateOf(decided.nextSnapshot)).toBe('connecting');
  });

  it('signals outside a session (late, after disconnect) change nothing', () => {
    const h = new Harness();
    for (const event of [
      { type: 'wa.qr', code: 'q', expiresAt: h.at(), at: h.at() },
      { type: 'wa.opened', jid: 'x@s.whatsapp.net', pushName: null, at: h.at() },
      { type: 'wa.closed', code: 401, at: h.at() },
      { type: 'wa.pairingCode', code: 'ABCD1234', phone: '1', at: h.at() },
    ] as const) {
      const { emitted, nextSnapshot } = decide(h.snapshot, event);
      expect(emitted).toEqual([]);
      expect(apiStateOf(nextSnapshot)).toBe('created');
    }
  });

  it('a QR while open is ignored', () => {
    const h = openInstance();
    expect(h.onConnection((c) => c.issueQr())).toEqual([]);
    expect(h.api()).toBe('open');
  });
});

describe('decide', () => {
  it('computes the events and the next state without side effects', () => {
    const actor = createActor(instanceMachine, {
      input: {
        at: '2026-01-01T00:00:00.000Z',
        instanceId: 'x',
        name: 'x',
        createdBy: 'admin',
        advancedSettings: DEFAULT_ADVANCED_SETTINGS,
        sinks: DEFAULT_SINK_SETTINGS,
        proxy: null,
      },
    }).start();
    const h = new Harness();
    const { nextSnapshot, emitted } = decide(h.snapshot, { type: 'connect', at: h.at() });
    expect(typesOf(emitted)).toEqual(['ConnectionStarting']);
    expect(apiStateOf(nextSnapshot)).toBe('connecting');
    expect(h.fake.openCount()).toBe(0); // decide opened nothing
    expect(h.api()).toBe('created'); // nor moved the live actor
    // The default connection is inert: a machine nobody provided a socket to connects to nothing.
    actor.send({ type: 'connect', at: '2026-01-01T00:00:01.000Z' });
    expect(apiStateOf(actor.getSnapshot())).toBe('connecting');
    actor.stop();
  });
});
