import { describe, expect, it } from 'vitest';
import { FailedAuthThrottle } from '../../../src/http/auth-throttle.ts';

describe('FailedAuthThrottle', () => {
  it('lets an address try `burst` wrong keys, then refills at perMinute', () => {
    let now = 0;
    const throttle = new FailedAuthThrottle({ burst: 3, perMinute: 6 }, () => now);
    for (let i = 0; i < 3; i++) {
      expect(throttle.refusal('a')).toBeUndefined();
      throttle.failed('a');
    }
    const refusal = throttle.refusal('a');
    expect(refusal?.code).toBe('ZW_ERR_RATE_LIMITED');
    // One try every 10 s.
    expect(refusal?.retryAfter).toBe(10);
    expect(throttle.refusal('b')).toBeUndefined();
    now += 9_000;
    expect(throttle.refusal('a')?.retryAfter).toBe(1);
    now += 1_000;
    expect(throttle.refusal('a')).toBeUndefined();
    throttle.failed('a');
    expect(throttle.refusal('a')?.retryAfter).toBe(10);
    // Full again after 30 s without a wrong key: forgotten, the whole burst is back.
    now += 30_000;
    for (let i = 0; i < 3; i++) {
      expect(throttle.refusal('a')).toBeUndefined();
      throttle.failed('a');
    }
    expect(throttle.refusal('a')).toBeDefined();
  });
});
