/**
 * Model-based test: random sequences of commands and connection signals run against the real machine
 * (with the real connection actor and the fake connector, decided and applied the way the runtime does)
 * and against a small reference model of the lifecycle rules written independently of the machine's code.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Harness, INSTANCE_ID, type CommandWithoutAt } from './harness.ts';
import { API_STATES, RECONNECT_BASE_MS, RECONNECT_CAP_MS } from '../../../machines/instance/index.ts';
import type { InstanceEvent, InstanceEventMap } from '../../../src/domain/events.ts';

const STABLE_OPEN_MS = 60_000;
const CLOSE_CODES = [515, 428, 408, 500, 503, 401, 440, 403, null, 411] as const;

type Action =
  | {
      readonly kind: 'command';
      readonly type: 'connect' | 'reconnect' | 'disconnect' | 'logout' | 'delete' | 'restore' | 'shutdown';
    }
  | { readonly kind: 'pair' }
  | { readonly kind: 'settings'; readonly alwaysOnline: boolean }
  | { readonly kind: 'sinks'; readonly webhook: boolean }
  | { readonly kind: 'proxy'; readonly set: boolean }
  | { readonly kind: 'qr' }
  | { readonly kind: 'open'; readonly restart: boolean }
  | { readonly kind: 'close'; readonly code: number | null }
  | { readonly kind: 'advance'; readonly ms: number };

const command = (type: Extract<Action, { kind: 'command' }>['type'], weight: number) => ({
  weight,
  arbitrary: fc.constant<Action>({ kind: 'command', type }),
});

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  command('connect', 10),
  command('reconnect', 3),
  command('disconnect', 3),
  command('logout', 3),
  command('restore', 3),
  command('shutdown', 2),
  command('delete', 1),
  { weight: 3, arbitrary: fc.constant<Action>({ kind: 'pair' }) },
  { weight: 2, arbitrary: fc.boolean().map((alwaysOnline): Action => ({ kind: 'settings', alwaysOnline })) },
  { weight: 1, arbitrary: fc.boolean().map((webhook): Action => ({ kind: 'sinks', webhook })) },
  { weight: 2, arbitrary: fc.boolean().map((set): Action => ({ kind: 'proxy', set })) },
  { weight: 12, arbitrary: fc.constant<Action>({ kind: 'qr' }) },
  { weight: 12, arbitrary: fc.boolean().map((restart): Action => ({ kind: 'open', restart })) },
  { weight: 16, arbitrary: fc.constantFrom(...CLOSE_CODES).map((code): Action => ({ kind: 'close', code })) },
  {
    weight: 10,
    arbitrary: fc
      .constantFrom(500, 2_500, 30_000, 70_000, 400_000)
      .map((ms): Action => ({ kind: 'advance', ms })),
  },
);

type Phase = 'created' | 'disconnected' | 'backoff' | 'connecting' | 'qr' | 'open' | 'deleted';

interface Model {
  phase: Phase;
  paired: boolean;
  sessionSaved: boolean;
  qrCount: number;
  retries: number;
  backoffLeft: number;
  openedAtMs: number | null;
  lastReason: string | null;
  proxy: boolean;
  alwaysOnline: boolean;
  webhook: boolean;
  /** Connections opened when the instance stopped by itself (401, 440, 403, QR timeout); null = not stopped. */
  stoppedAtOpenCount: number | null;
}

const SOCKET_PHASES: readonly Phase[] = ['connecting', 'qr', 'open'];
const LIVE_PHASES: readonly Phase[] = ['backoff', 'connecting', 'qr', 'open'];

function apiOf(phase: Phase): string {
  return phase === 'backoff' ? 'connecting' : phase;
}

function startConnecting(m: Model): void {
  m.phase = 'connecting';
  m.qrCount = 0;
  m.openedAtMs = null;
  m.stoppedAtOpenCount = null;
}

function stop(m: Model, h: Harness, reason: string): void {
  m.phase = 'disconnected';
  m.openedAtMs = null;
  m.lastReason = reason;
  m.stoppedAtOpenCount = h.fake.openCount(INSTANCE_ID);
}

function retryBounds(retry: number): [number, number] {
  const nominal = Math.min(RECONNECT_BASE_MS * 2 ** (retry - 1), RECONNECT_CAP_MS);
  return [
    Math.max(RECONNECT_BASE_MS, Math.floor(nominal * 0.75)),
    Math.min(RECONNECT_CAP_MS, Math.ceil(nominal * 1.25)),
  ];
}

function lastOf<K extends keyof InstanceEventMap>(
  events: readonly InstanceEvent[],
  type: K,
): InstanceEventMap[K] {
  const found = [...events].reverse().find((e) => e.type === type);
  if (!found) throw new Error(`expected a ${type}`);
  return found.data as InstanceEventMap[K];
}

/** Applies a WhatsApp-side close to the model, as the lifecycle rules read. */
function modelClose(m: Model, h: Harness, code: number | null, recorded: readonly InstanceEvent[]): void {
  const wasQr = m.phase === 'qr';
  const wasOpen = m.phase === 'open';
  if (code === 515) {
    startConnecting(m);
    return;
  }
  if (code === 401) {
    m.paired = false;
    m.sessionSaved = false;
    stop(m, h, 'logged_out');
    return;
  }
  if (code === 440) return stop(m, h, 'replaced');
  if (code === 403) return stop(m, h, 'banned');
  if (code === 408 && wasQr) return stop(m, h, 'qr_timeout');
  const stable = wasOpen && m.openedAtMs !== null && h.clock.now() - m.openedAtMs >= STABLE_OPEN_MS;
  m.retries = (stable ? 0 : m.retries) + 1;
  const retryInMs = lastOf(recorded, 'ConnectionClosed').retryInMs ?? -1;
  const [min, max] = retryBounds(m.retries);
  expect(retryInMs).toBeGreaterThanOrEqual(min);
  expect(retryInMs).toBeLessThanOrEqual(max);
  m.phase = 'backoff';
  m.backoffLeft = retryInMs;
  m.openedAtMs = null;
  m.lastReason = 'connection_lost';
}

function step(h: Harness, m: Model, action: Action, qrMaxCount: number): void {
  const socket = h.fake.connection(INSTANCE_ID);
  const command = (c: CommandWithoutAt) => h.dispatch(c);
  switch (action.kind) {
    case 'command': {
      const before = m.phase;
      const recorded = command({ type: action.type });
      if (before === 'deleted') {
        expect(recorded).toEqual([]);
        return;
      }
      switch (action.type) {
        case 'connect':
          if (before === 'created' || before === 'disconnected') {
            startConnecting(m);
            m.retries = 0;
          }
          return;
        case 'reconnect':
          startConnecting(m);
          m.retries = 0;
          return;
        case 'disconnect':
          if (LIVE_PHASES.includes(before)) {
            m.phase = 'disconnected';
            m.lastReason = 'user_disconnect';
          }
          return;
        case 'logout':
          if (socket) expect(socket.commands).toContainEqual({ type: 'logout' });
          m.phase = 'disconnected';
          m.paired = false;
          m.sessionSaved = false;
          m.lastReason = 'user_logout';
          m.openedAtMs = null;
          return;
        case 'delete':
          if (socket && m.paired) expect(socket.commands).toContainEqual({ type: 'logout' });
          m.phase = 'deleted';
          return;
        case 'restore':
          if (LIVE_PHASES.includes(before)) {
            if (m.paired) {
              startConnecting(m);
              m.retries = 0;
            } else {
              m.phase = 'disconnected';
              m.lastReason = 'shutdown';
            }
          } else if (before === 'disconnected' && m.paired && m.lastReason === 'shutdown') {
            startConnecting(m);
            m.retries = 0;
          }
          return;
        case 'shutdown':
          if (LIVE_PHASES.includes(before)) {
            m.phase = 'disconnected';
            m.lastReason = 'shutdown';
          }
          return;
      }
      return;
    }
    case 'pair': {
      const before = h.events.length;
      command({ type: 'requestPairingCode', phone: '5511999999999' });
      const recorded = h.events.slice(before).map((e) => e.type);
      expect(recorded).toEqual(m.phase === 'connecting' || m.phase === 'qr' ? ['PairingCodeIssued'] : []);
      return;
    }
    case 'settings':
      command({ type: 'changeAdvancedSettings', settings: { alwaysOnline: action.alwaysOnline } });
      if (m.phase !== 'deleted') m.alwaysOnline = action.alwaysOnline;
      return;
    case 'sinks':
      command({
        type: 'configureSinks',
        sinks: { webhookUrl: action.webhook ? 'https://hook.example.test' : null },
      });
      if (m.phase !== 'deleted') m.webhook = action.webhook;
      return;
    case 'proxy':
      command(
        action.set
          ? {
              type: 'configureProxy',
              proxy: { host: 'p.example.test', port: 1080, protocol: 'socks5', hasPassword: false },
            }
          : { type: 'removeProxy' },
      );
      if (m.phase !== 'deleted') m.proxy = action.set;
      return;
    case 'qr': {
      if (!socket) return;
      const recorded = h.onConnection((c) => c.issueQr());
      if (m.phase === 'connecting' || m.phase === 'qr') {
        if (m.qrCount + 1 > qrMaxCount) {
          stop(m, h, 'qr_timeout');
        } else {
          m.qrCount += 1;
          m.phase = 'qr';
          expect(lastOf(recorded, 'QrCodeIssued').count).toBe(m.qrCount);
        }
      } else {
        expect(recorded).toEqual([]);
      }
      return;
    }
    case 'open': {
      if (!socket || m.phase === 'open') return;
      if (m.sessionSaved) {
        h.onConnection((c) => c.resume());
      } else {
        const recorded = h.onConnection((c) => c.scan(undefined, { restart: action.restart }));
        m.sessionSaved = true;
        if (action.restart) {
          modelClose(m, h, 515, recorded);
          return;
        }
      }
      m.phase = 'open';
      m.paired = true;
      m.openedAtMs = h.clock.now();
      return;
    }
    case 'close': {
      if (!socket) return;
      const recorded = h.onConnection((c) => c.closeWith(action.code));
      modelClose(m, h, action.code, recorded);
      return;
    }
    case 'advance': {
      h.advance(action.ms);
      if (m.phase === 'backoff') {
        m.backoffLeft -= action.ms;
        if (m.backoffLeft <= 0) startConnecting(m);
      }
      return;
    }
  }
}

function checkInvariants(h: Harness, m: Model, qrMaxCount: number): void {
  const api = h.api();
  expect(API_STATES).toContain(api);
  expect(api).toBe(apiOf(m.phase));
  expect(h.snapshot.value === 'backoff').toBe(m.phase === 'backoff');
  // One socket exactly while in a session, never two.
  expect(h.fake.liveCount(INSTANCE_ID)).toBe(SOCKET_PHASES.includes(m.phase) ? 1 : 0);
  expect(h.fake.maxLiveCount(INSTANCE_ID)).toBeLessThanOrEqual(1);
  // No automatic reconnect after 401, 440, 403 or a QR timeout.
  if (m.stoppedAtOpenCount !== null) expect(h.fake.openCount(INSTANCE_ID)).toBe(m.stoppedAtOpenCount);
  // The QR cap.
  for (const e of h.events) {
    if (e.type === 'QrCodeIssued')
      expect((e.data as { count: number }).count).toBeLessThanOrEqual(qrMaxCount);
  }
  expect(h.context.qrCount).toBeLessThanOrEqual(qrMaxCount);
  // Deleted is final.
  expect(h.snapshot.status).toBe(m.phase === 'deleted' ? 'done' : 'active');
  if (m.phase === 'deleted') return;
  expect(h.context.paired).toBe(m.paired);
  if (h.context.paired) expect(h.fake.hasSession(INSTANCE_ID)).toBe(true);
  expect(h.context.reconnectAttempt).toBe(m.retries);
  expect(h.context.proxy !== null).toBe(m.proxy);
  expect(h.context.advancedSettings.alwaysOnline).toBe(m.alwaysOnline);
  expect(h.context.sinks.webhookUrl !== null).toBe(m.webhook);
  // Settings reach the live socket.
  const socket = h.fake.connection(INSTANCE_ID);
  if (socket) expect(socket.settings).toEqual(h.context.advancedSettings);
  // Replaying the recorded events gives the live actor's API state and context.
  h.expectFoldMatches();
}

describe('instance machine against a reference model', () => {
  it('keeps the invariants on random command and signal sequences', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(actionArb, { minLength: 5, maxLength: 80, size: 'max' }),
        (qrMaxCount, actions) => {
          const h = new Harness({ config: { qrMaxCount, stableOpenMs: STABLE_OPEN_MS } });
          const m: Model = {
            phase: 'created',
            paired: false,
            sessionSaved: false,
            qrCount: 0,
            retries: 0,
            backoffLeft: 0,
            openedAtMs: null,
            lastReason: null,
            proxy: false,
            alwaysOnline: false,
            webhook: false,
            stoppedAtOpenCount: null,
          };
          for (const action of actions) {
            step(h, m, action, qrMaxCount);
            checkInvariants(h, m, qrMaxCount);
          }
          h.actor.stop();
        },
      ),
      { numRuns: 400 },
    );
  });
});
