/**
 * The restore plan of a cold start (and of instances adopted later): every instance waits in one queue,
 * the most recently active first (their users notice first), and starts when the concurrency policy
 * (concurrency.ts) has a slot, after a little jitter so that logins do not leave in lock-step. Keeps the
 * progress for /health, /metrics and the log, and tells a command for an instance still waiting that it
 * has to wait (and moves that instance to the front: someone is asking for it).
 */
import type { Logger } from 'pino';
import type { ConcurrencyPolicy } from './concurrency.ts';
import type { LoadSignal } from './load-signal.ts';

export interface RestoreTimers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Monotonic milliseconds. */
  now(): number;
}

export const SYSTEM_TIMERS: RestoreTimers = {
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, ms);
    handle.unref?.();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  now: () => performance.now(),
};

export interface RestoreSchedulerOptions {
  /** Restores one instance; settles when the instance has settled (open, waiting for a QR, closed…). */
  readonly restore: (instanceId: string) => Promise<void>;
  /**
   * When each instance was last active (ms since the epoch); read once, when the first restore is
   * queued. Instances it does not name come last, in the order they were queued.
   */
  readonly lastActivity: () => Promise<ReadonlyMap<string, number>>;
  readonly concurrency: ConcurrencyPolicy;
  readonly load: LoadSignal;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  readonly timers?: RestoreTimers;
  /** Random in [0, 1) (the jitter). */
  readonly random?: () => number;
  /** How often the load is sampled and the concurrency adjusted (default 500 ms). */
  readonly tickMs?: number;
  /** Each restore starts after a random delay up to this (default 20 ms). */
  readonly jitterMs?: number;
  /** How often a progress line is logged while restoring (default 5 s). */
  readonly progressEveryMs?: number;
}

export interface RestoreProgress {
  /** Restores finished in the current (or last) run. */
  readonly done: number;
  /** Restores queued in the current (or last) run. */
  readonly total: number;
  readonly running: number;
  readonly concurrency: number;
  /** Seconds from the run's first restore to its last one finished; so far, while it runs. */
  readonly seconds: number;
  readonly finished: boolean;
}

interface Queued {
  readonly id: string;
  readonly activity: number;
  readonly order: number;
}

export class RestoreScheduler {
  private readonly timers: RestoreTimers;
  private readonly random: () => number;
  private readonly tickMs: number;
  private readonly jitterMs: number;
  private readonly progressEveryMs: number;
  /** Most recently active first; ties in the order queued. */
  private queue: Queued[] = [];
  private readonly waiting = new Set<string>();
  private activity: ReadonlyMap<string, number> | undefined;
  private loadingActivity: Promise<void> | undefined;
  private order = 0;
  private running = 0;
  private done = 0;
  private total = 0;
  private startedAt = 0;
  private finishedAt: number | undefined;
  private lastLogAt = 0;
  /** Every slot was in use at some point since the last tick while restores waited. */
  private demand = false;
  private tick: unknown;
  private stopped = false;

  constructor(private readonly options: RestoreSchedulerOptions) {
    this.timers = options.timers ?? SYSTEM_TIMERS;
    this.random = options.random ?? Math.random;
    this.tickMs = options.tickMs ?? 500;
    this.jitterMs = options.jitterMs ?? 20;
    this.progressEveryMs = options.progressEveryMs ?? 5_000;
  }

  /** Queues an instance's restore (once: a second call while it waits changes nothing). */
  enqueue(instanceId: string): void {
    if (this.stopped || this.waiting.has(instanceId)) return;
    if (this.idle()) this.beginRun();
    this.waiting.add(instanceId);
    this.total += 1;
    const entry = { id: instanceId, activity: this.activityOf(instanceId), order: this.order++ };
    this.queue.splice(this.insertionPoint(entry), 0, entry);
    if (!this.activity) {
      this.loadingActivity ??= this.options
        .lastActivity()
        .catch((error: unknown) => {
          this.options.logger.warn(
            { err: error },
            'could not read when instances were last active; restoring in queue order',
          );
          return new Map<string, number>();
        })
        .then((activity) => {
          this.activity = activity;
          this.queue = this.queue
            .map((queued) =>
              queued.activity === Number.POSITIVE_INFINITY
                ? queued
                : { ...queued, activity: this.activityOf(queued.id) },
            )
            .sort(byPriority);
          this.pump();
        });
      return;
    }
    this.pump();
  }

  /** True while the instance waits for its turn (its restore has not started). */
  isWaiting(instanceId: string): boolean {
    return this.waiting.has(instanceId);
  }

  /**
   * Someone asked for a waiting instance: it goes to the front of the queue. Returns an estimate of the
   * seconds until it has been restored (for Retry-After), at least 1.
   */
  hurry(instanceId: string): number {
    const index = this.queue.findIndex((queued) => queued.id === instanceId);
    if (index >= 0 && this.queue[index]!.activity !== Number.POSITIVE_INFINITY) {
      this.queue.splice(index, 1);
      // Ahead of every instance nobody asked for; behind those asked for earlier.
      const entry = { id: instanceId, activity: Number.POSITIVE_INFINITY, order: this.order++ };
      this.queue.splice(this.insertionPoint(entry), 0, entry);
    }
    const seconds = this.elapsedSeconds();
    const perSecond = seconds > 0 ? this.done / seconds : 0;
    // Its own restore plus the slots ahead of it; without a rate yet, a few seconds.
    const estimate = perSecond > 0 ? (1 + this.running) / perSecond : 5;
    return Math.max(1, Math.min(60, Math.ceil(estimate)));
  }

  progress(): RestoreProgress {
    return {
      done: this.done,
      total: this.total,
      running: this.running,
      concurrency: this.options.concurrency.limit(),
      seconds: this.elapsedSeconds(),
      finished: this.idle(),
    };
  }

  /** No restore starts any more (shutdown); those running finish on their own. */
  stop(): void {
    this.stopped = true;
    for (const queued of this.queue) this.waiting.delete(queued.id);
    this.queue = [];
    this.stopTicking();
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.running === 0;
  }

  private beginRun(): void {
    this.done = 0;
    this.total = 0;
    this.startedAt = this.timers.now();
    this.lastLogAt = this.startedAt;
    this.finishedAt = undefined;
    this.options.load.start();
    this.options.load.sample();
    this.scheduleTick();
  }

  private elapsedSeconds(): number {
    if (this.total === 0) return 0;
    return ((this.finishedAt ?? this.timers.now()) - this.startedAt) / 1000;
  }

  private activityOf(instanceId: string): number {
    return this.activity?.get(instanceId) ?? Number.NEGATIVE_INFINITY;
  }

  private insertionPoint(entry: Queued): number {
    let low = 0;
    let high = this.queue.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (byPriority(this.queue[middle]!, entry) <= 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private pump(): void {
    if (!this.activity || this.stopped) return;
    const limit = this.options.concurrency.limit();
    while (this.running < limit && this.queue.length > 0) {
      const next = this.queue.shift()!;
      this.waiting.delete(next.id);
      this.running += 1;
      void this.run(next.id);
    }
    if (this.running >= limit && this.queue.length > 0) this.demand = true;
  }

  private async run(instanceId: string): Promise<void> {
    try {
      const jitter = Math.floor(this.random() * this.jitterMs);
      if (jitter > 0) await new Promise<void>((resolve) => this.timers.setTimeout(resolve, jitter));
      await this.options.restore(instanceId);
    } catch (error) {
      this.options.logger.warn({ err: error, instanceId }, 'restore failed');
    } finally {
      this.running -= 1;
      this.done += 1;
      if (this.idle()) this.finishRun();
      else this.pump();
    }
  }

  private finishRun(): void {
    this.finishedAt = this.timers.now();
    this.stopTicking();
    this.options.load.stop();
    this.options.logger.info(
      { restored: this.done, seconds: round1(this.elapsedSeconds()) },
      `restored ${this.done} instance(s) in ${round1(this.elapsedSeconds())} s`,
    );
  }

  private scheduleTick(): void {
    this.stopTicking();
    this.tick = this.timers.setTimeout(() => this.onTick(), this.tickMs);
  }

  private stopTicking(): void {
    if (this.tick !== undefined) this.timers.clearTimeout(this.tick);
    this.tick = undefined;
  }

  private onTick(): void {
    this.tick = undefined;
    if (this.idle() || this.stopped) return;
    const sample = this.options.load.sample();
    const demand = this.demand || (this.queue.length > 0 && this.running >= this.options.concurrency.limit());
    this.demand = false;
    this.options.concurrency.update(sample, demand);
    const now = this.timers.now();
    if (now - this.lastLogAt >= this.progressEveryMs) {
      this.lastLogAt = now;
      this.options.logger.info(
        {
          done: this.done,
          total: this.total,
          running: this.running,
          concurrency: this.options.concurrency.limit(),
          loopDelayP99Ms: Math.round(sample.loopDelayP99Ms),
          cpu: Math.round(sample.cpu * 100) / 100,
        },
        `restoring instances: ${this.done} of ${this.total} done, ${this.running} logging in (at most ${this.options.concurrency.limit()} at once)`,
      );
    }
    this.pump();
    this.scheduleTick();
  }
}

function byPriority(a: Queued, b: Queued): number {
  if (a.activity !== b.activity) return a.activity > b.activity ? -1 : 1;
  return a.order - b.order;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
