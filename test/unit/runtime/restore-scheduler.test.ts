/**
 * The restore plan (src/runtime/restore/scheduler.ts) on a fake clock and a scripted load signal:
 * most recently active first, never more restores in flight than the policy allows (and more once it
 * grows), progress for /health, the instance a request asks for moved to the front, a progress line in
 * the log, nothing started after stop.
 */
import { describe, expect, it } from 'vitest';
import {
  AdaptiveConcurrency,
  FixedConcurrency,
  type LoadSample,
} from '../../../src/runtime/restore/concurrency.ts';
import type { LoadSignal } from '../../../src/runtime/restore/load-signal.ts';
import { RestoreScheduler, type RestoreTimers } from '../../../src/runtime/restore/scheduler.ts';

class FakeClock implements RestoreTimers {
  private time = 0;
  private timers: Array<{ at: number; callback: () => void; id: number }> = [];
  private serial = 0;
  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.serial;
    this.timers.push({ at: this.time + ms, callback, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== handle);
  }
  /** Moves time forward, firing what falls due (and letting promises settle between timers). */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await flush();
      const next = this.timers.filter((timer) => timer.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.timers = this.timers.filter((timer) => timer !== next);
      this.time = next.at;
      next.callback();
    }
    this.time = end;
    await flush();
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

class ScriptedLoad implements LoadSignal {
  next: LoadSample = { loopDelayP99Ms: 1, cpu: 0.1 };
  started = 0;
  stopped = 0;
  start(): void {
    this.started += 1;
  }
  sample(): LoadSample {
    return this.next;
  }
  stop(): void {
    this.stopped += 1;
  }
}

/** Restores that finish when the test says so. */
class Restores {
  readonly started: string[] = [];
  private readonly finishers = new Map<string, () => void>();
  inFlight = 0;
  maxInFlight = 0;
  readonly run = (id: string): Promise<void> => {
    this.started.push(id);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise<void>((resolve) =>
      this.finishers.set(id, () => {
        this.inFlight -= 1;
        resolve();
      }),
    );
  };
  finish(id: string): void {
    const finish = this.finishers.get(id);
    if (!finish) throw new Error(`${id} is not running`);
    this.finishers.delete(id);
    finish();
  }
  running(): string[] {
    return [...this.finishers.keys()];
  }
}

const quiet = { info: () => undefined, warn: () => undefined };

function scheduler(options: {
  restores: Restores;
  clock: FakeClock;
  load?: ScriptedLoad;
  activity?: Record<string, number>;
  limit?: number;
  adaptive?: AdaptiveConcurrency;
  logger?: { info: (...args: unknown[]) => void; warn: (...args: unknown[]) => void };
}): RestoreScheduler {
  return new RestoreScheduler({
    restore: options.restores.run,
    lastActivity: async () => new Map(Object.entries(options.activity ?? {})),
    concurrency: options.adaptive ?? new FixedConcurrency(options.limit ?? 1),
    load: options.load ?? new ScriptedLoad(),
    logger: (options.logger ?? quiet) as never,
    timers: options.clock,
    random: () => 0.5,
    jitterMs: 20,
    tickMs: 500,
    progressEveryMs: 5_000,
  });
}

describe('restore plan', () => {
  it('restores the most recently active first, never-active ones last in queue order', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const plan = scheduler({ restores, clock, activity: { b: 3_000, d: 1_000, c: 2_000 } });
    for (const id of ['a', 'b', 'c', 'd', 'e']) plan.enqueue(id);
    const order: string[] = [];
    for (let i = 0; i < 5; i++) {
      await clock.advance(20);
      const [running] = restores.running();
      order.push(running!);
      restores.finish(running!);
    }
    expect(order).toEqual(['b', 'c', 'd', 'a', 'e']);
  });

  it('reports progress, and the time the whole restore took', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const plan = scheduler({ restores, clock, limit: 2 });
    expect(plan.progress()).toMatchObject({ done: 0, total: 0, finished: true });
    for (const id of ['a', 'b', 'c']) plan.enqueue(id);
    await clock.advance(20);
    expect(plan.progress()).toMatchObject({ done: 0, total: 3, running: 2, finished: false });
    await clock.advance(980);
    restores.finish('a');
    await clock.advance(20);
    expect(plan.progress()).toMatchObject({ done: 1, total: 3, running: 2 });
    restores.finish('b');
    restores.finish('c');
    await clock.advance(1_000);
    expect(plan.progress()).toMatchObject({ done: 3, total: 3, running: 0, finished: true });
    // From the first restore queued (t = 0) to the last one finished (t = 1020 ms); it stays that.
    expect(plan.progress().seconds).toBeCloseTo(1.02, 5);
    await clock.advance(10_000);
    expect(plan.progress().seconds).toBeCloseTo(1.02, 5);
  });

  it('a fixed limit is never passed', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const plan = scheduler({ restores, clock, limit: 3 });
    for (let i = 0; i < 20; i++) plan.enqueue(`i${i}`);
    for (let step = 0; step < 40; step++) {
      await clock.advance(50);
      for (const id of restores.running().slice(0, 1)) restores.finish(id);
    }
    expect(restores.started).toHaveLength(20);
    expect(restores.maxInFlight).toBe(3);
  });

  it('runs more at once while the load stays low, fewer once the loop lags', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const load = new ScriptedLoad();
    const adaptive = new AdaptiveConcurrency({ min: 1, max: 8, initial: 2 });
    const plan = scheduler({ restores, clock, load, adaptive });
    for (let i = 0; i < 50; i++) plan.enqueue(`i${i}`);
    await clock.advance(20);
    expect(restores.inFlight).toBe(2);
    // Calm ticks with every slot in use: one more slot each tick, taken at once.
    await clock.advance(500);
    expect(restores.inFlight).toBe(3);
    await clock.advance(1_000);
    expect(restores.inFlight).toBe(5);
    // The loop lags: half the slots; those running finish, and only 2 start in their place.
    load.next = { loopDelayP99Ms: 200, cpu: 0.5 };
    await clock.advance(500);
    expect(plan.progress().concurrency).toBe(2);
    for (const id of restores.running()) restores.finish(id);
    await clock.advance(20);
    expect(restores.inFlight).toBe(2);
    expect(load.started).toBe(1);
    plan.stop();
  });

  it('moves an instance someone asks for to the front, and says how long to wait', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const plan = scheduler({ restores, clock, activity: { a: 4, b: 3, c: 2, d: 1 } });
    for (const id of ['a', 'b', 'c', 'd']) plan.enqueue(id);
    await clock.advance(20);
    expect(restores.running()).toEqual(['a']);
    expect(plan.isWaiting('d')).toBe(true);
    expect(plan.isWaiting('a')).toBe(false);
    const retryAfter = plan.hurry('d');
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    restores.finish('a');
    await clock.advance(20);
    expect(restores.running()).toEqual(['d']);
    expect(plan.isWaiting('d')).toBe(false);
  });

  it('logs a progress line every few seconds while restoring, and one at the end', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const lines: string[] = [];
    const logger = {
      info: (...args: unknown[]) => void lines.push(String(args[1])),
      warn: () => undefined,
    };
    const plan = scheduler({ restores, clock, limit: 1, logger });
    plan.enqueue('a');
    plan.enqueue('b');
    await clock.advance(6_000);
    expect(lines).toEqual(['restoring instances: 0 of 2 done, 1 logging in (at most 1 at once)']);
    restores.finish('a');
    await clock.advance(20);
    restores.finish('b');
    await clock.advance(20);
    expect(lines.at(-1)).toMatch(/^restored 2 instance\(s\) in 6 s$/);
  });

  it('starts nothing after stop', async () => {
    const clock = new FakeClock();
    const restores = new Restores();
    const plan = scheduler({ restores, clock, limit: 1 });
    plan.enqueue('a');
    plan.enqueue('b');
    await clock.advance(20);
    plan.stop();
    expect(plan.isWaiting('b')).toBe(false);
    restores.finish('a');
    await clock.advance(1_000);
    expect(restores.started).toEqual(['a']);
    plan.enqueue('c');
    await clock.advance(1_000);
    expect(restores.started).toEqual(['a']);
  });
});
