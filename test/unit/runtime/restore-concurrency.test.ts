/**
 * The adaptive restore concurrency (AIMD) against a scripted load signal: grows one slot a tick while the
 * loop and the CPU have room and every slot is used, halves when either is over its threshold, waits a
 * tick after a decrease, stays within [min, max]; the fixed policy never moves.
 */
import { describe, expect, it } from 'vitest';
import {
  AdaptiveConcurrency,
  FixedConcurrency,
  type LoadSample,
} from '../../../src/runtime/restore/concurrency.ts';

const calm: LoadSample = { loopDelayP99Ms: 5, cpu: 0.3 };
const laggy: LoadSample = { loopDelayP99Ms: 120, cpu: 0.5 };
const saturated: LoadSample = { loopDelayP99Ms: 10, cpu: 1.5 };
const busyThread: LoadSample = { loopDelayP99Ms: 30, cpu: 1.0 };
const middling: LoadSample = { loopDelayP99Ms: 35, cpu: 0.5 };

describe('adaptive restore concurrency', () => {
  it('grows by one a tick while calm and every slot is in use, up to max', () => {
    const policy = new AdaptiveConcurrency({ min: 1, max: 5, initial: 2 });
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      policy.update(calm, true);
      seen.push(policy.limit());
    }
    expect(seen).toEqual([3, 4, 5, 5, 5, 5]);
  });

  it('does not grow when slots sit idle (no demand)', () => {
    const policy = new AdaptiveConcurrency({ min: 1, max: 32, initial: 2 });
    for (let i = 0; i < 5; i++) policy.update(calm, false);
    expect(policy.limit()).toBe(2);
  });

  it('halves when the loop lags or the CPU is saturated, never below min', () => {
    const policy = new AdaptiveConcurrency({ min: 2, max: 64, initial: 20 });
    policy.update(laggy, true);
    expect(policy.limit()).toBe(10);
    policy.update(saturated, true);
    expect(policy.limit()).toBe(5);
    policy.update(laggy, true);
    policy.update(laggy, true);
    expect(policy.limit()).toBe(2);
  });

  it('waits one tick after a decrease before growing again, and holds between the thresholds', () => {
    const policy = new AdaptiveConcurrency({ min: 1, max: 64, initial: 8 });
    policy.update(laggy, true);
    expect(policy.limit()).toBe(4);
    policy.update(calm, true);
    expect(policy.limit()).toBe(4);
    policy.update(calm, true);
    expect(policy.limit()).toBe(5);
    policy.update(middling, true);
    expect(policy.limit()).toBe(5);
    // A JS thread busy all the time with the loop still answering is the work getting done: hold.
    policy.update(busyThread, true);
    expect(policy.limit()).toBe(5);
  });

  it('settles where the load it causes stays low, and backs off when the machine gets busier', () => {
    const policy = new AdaptiveConcurrency({ min: 1, max: 32 });
    // Each restore in flight adds 6 ms of loop delay: growth stops once the delay passes 20 ms.
    let perSlotMs = 6;
    const limits: number[] = [];
    for (let tick = 0; tick < 20; tick++) {
      policy.update({ loopDelayP99Ms: policy.limit() * perSlotMs, cpu: 0.4 }, true);
      limits.push(policy.limit());
    }
    expect(limits.slice(0, 3)).toEqual([3, 4, 4]);
    expect(new Set(limits.slice(3))).toEqual(new Set([4]));
    // Other processes take the CPU: each restore now costs 20 ms of delay, 4 of them pass 50 ms.
    perSlotMs = 20;
    for (let tick = 0; tick < 10; tick++) {
      policy.update({ loopDelayP99Ms: policy.limit() * perSlotMs, cpu: 0.4 }, true);
      limits.push(policy.limit());
    }
    expect(limits.slice(20)).toEqual([2, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
  });

  it('holds when the loop lags while the process hardly gets the CPU (the machine is busy elsewhere)', () => {
    const policy = new AdaptiveConcurrency({ min: 1, max: 64, initial: 8 });
    policy.update({ loopDelayP99Ms: 300, cpu: 0.1 }, true);
    expect(policy.limit()).toBe(8);
    // The same lag while this process burns its core: the restores cause it.
    policy.update({ loopDelayP99Ms: 300, cpu: 0.9 }, true);
    expect(policy.limit()).toBe(4);
  });

  it('refuses bounds that make no sense', () => {
    expect(() => new AdaptiveConcurrency({ min: 0, max: 4 })).toThrow(/min/);
    expect(() => new AdaptiveConcurrency({ min: 5, max: 4 })).toThrow(/min/);
  });

  it('the fixed policy (RESTORE_CONCURRENCY=n) never moves', () => {
    const policy = new FixedConcurrency(4);
    policy.update();
    expect(policy.limit()).toBe(4);
  });
});
