import { describe, expect, it } from 'vitest';
import { classifyClose, reconnectsByItself } from '../../../src/domain/reason-codes.ts';
import {
  exponentialBackoffMs,
  RECONNECT_BASE_MS,
  RECONNECT_CAP_MS,
} from '../../../machines/instance/index.ts';

describe('classifyClose', () => {
  it.each([
    [515, {}, 'restart_required', 'restart_now', false],
    [428, {}, 'connection_lost', 'backoff', false],
    [408, {}, 'connection_lost', 'backoff', false],
    [408, { awaitingQr: true }, 'qr_timeout', 'stop', false],
    [500, {}, 'connection_lost', 'backoff', false],
    [503, {}, 'connection_lost', 'backoff', false],
    [null, {}, 'connection_lost', 'backoff', false],
    [411, {}, 'connection_lost', 'backoff', false],
    [401, {}, 'logged_out', 'stop', true],
    [401, { awaitingQr: true }, 'logged_out', 'stop', true],
    [440, {}, 'replaced', 'stop', false],
    [403, {}, 'banned', 'stop', false],
    [428, { awaitingQr: true }, 'connection_lost', 'backoff', false],
  ] as const)('%s %o → %s / %s / sessionRemoved %s', (code, context, reason, action, sessionRemoved) => {
    expect(classifyClose(code, context)).toEqual({ reason, action, sessionRemoved });
  });

  it('never reconnects by itself after 401, 440 or 403', () => {
    expect([401, 440, 403].map((c) => reconnectsByItself(c))).toEqual([false, false, false]);
    expect([515, 428, 503, null].map((c) => reconnectsByItself(c))).toEqual([true, true, true, true]);
  });
});

describe('exponentialBackoffMs', () => {
  it('starts near 2 s, doubles, and stays within [2 s, 5 min]', () => {
    const delays = Array.from({ length: 30 }, (_, i) => exponentialBackoffMs(i + 1, `seed-${i}`));
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(RECONNECT_BASE_MS);
      expect(d).toBeLessThanOrEqual(RECONNECT_CAP_MS);
    }
    expect(delays[0]).toBeLessThanOrEqual(2_500);
    expect(delays[4]).toBeGreaterThanOrEqual(32_000 * 0.75);
    expect(delays[4]).toBeLessThanOrEqual(32_000 * 1.25);
    expect(delays[29]).toBeGreaterThanOrEqual(RECONNECT_CAP_MS * 0.75);
  });

  it('is deterministic per seed and spreads different seeds', () => {
    expect(exponentialBackoffMs(3, 'a:3')).toBe(exponentialBackoffMs(3, 'a:3'));
    const spread = new Set(Array.from({ length: 50 }, (_, i) => exponentialBackoffMs(3, `inst-${i}:3`)));
    expect(spread.size).toBeGreaterThan(40);
  });
});
