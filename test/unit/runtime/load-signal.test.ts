/**
 * The restore plan's load signal reads this process for real: a loop blocked for 300 ms shows as a
 * delay of at least 250 ms and the CPU spent blocking shows as CPU; before start and after stop it reads
 * nothing.
 */
import { describe, expect, it } from 'vitest';
import { ProcessLoadSignal } from '../../../src/runtime/restore/load-signal.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('process load signal', () => {
  it('sees a blocked event loop and the CPU it burned', async () => {
    const signal = new ProcessLoadSignal();
    signal.start();
    try {
      await sleep(50);
      signal.sample();
      const until = performance.now() + 300;
      while (performance.now() < until) {
        // the event loop is blocked here
      }
      await sleep(30);
      const busy = signal.sample();
      expect(busy.loopDelayP99Ms).toBeGreaterThanOrEqual(250);
      // On a loaded machine the busy loop gets only part of a core: some CPU, not a set share.
      expect(busy.cpu).toBeGreaterThan(0);
    } finally {
      signal.stop();
    }
  });

  it('reads no delay before it starts and after it stops', () => {
    const signal = new ProcessLoadSignal();
    expect(signal.sample().loopDelayP99Ms).toBe(0);
    signal.start();
    signal.stop();
    expect(signal.sample().loopDelayP99Ms).toBe(0);
  });
});
