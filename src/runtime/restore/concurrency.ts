/**
 * How many instances restore at once. Each WhatsApp login costs CPU on the event loop that also serves
 * the API and the live instances: a fixed number is slow on a big machine and can still starve a small
 * one. The adaptive policy is AIMD, as TCP finds a link's rate: one more slot each tick while the event
 * loop answers quickly and the process has CPU to spare (and every slot was in use: there was demand),
 * half as many as soon as the loop lags or the process uses more CPU than its one JS thread can, always
 * within [min, max].
 */

/** What the last tick measured (load-signal.ts). */
export interface LoadSample {
  /** Event-loop delay p99 over the tick, in ms. */
  readonly loopDelayP99Ms: number;
  /** CPU the process used over the tick, as a fraction of one core (may pass 1: GC and pool threads). */
  readonly cpu: number;
}

export interface ConcurrencyPolicy {
  /** Restores that may run at once now. */
  limit(): number;
  /**
   * One tick's measurement. `demand`: the restores waiting could have used every slot during the tick
   * (growing while slots sit idle would only hide a later storm).
   */
  update(sample: LoadSample, demand: boolean): void;
  /** For the log and /metrics: 'adaptive' or 'fixed'. */
  readonly kind: 'adaptive' | 'fixed';
}

/** RESTORE_CONCURRENCY=<n>: always n. */
export class FixedConcurrency implements ConcurrencyPolicy {
  readonly kind = 'fixed';
  constructor(private readonly size: number) {}
  limit(): number {
    return this.size;
  }
  update(): void {}
}

export interface AdaptiveOptions {
  readonly min: number;
  readonly max: number;
  /** Where it starts (default min(max, 2)). */
  readonly initial?: number;
  /** Grow only while loop delay p99 is at most this (default 20 ms). */
  readonly loopLowMs?: number;
  /** Halve when loop delay p99 passes this (default 50 ms, the target API latency budget). */
  readonly loopHighMs?: number;
  /** Grow only while CPU is at most this fraction of a core (default 0.85). */
  readonly cpuLow?: number;
  /**
   * Halve when CPU passes this many cores (default 1.2: more than the one JS thread can use, so GC or
   * the thread pool are saturating too). A busy JS thread alone is no reason: that is the work getting
   * done; the loop delay says when it hurts.
   */
  readonly cpuHigh?: number;
  /**
   * Loop lag while the process used less CPU than this (default 0.3 of a core) is the machine's, not the
   * restores': the policy holds instead of halving.
   */
  readonly cpuStarved?: number;
}

export class AdaptiveConcurrency implements ConcurrencyPolicy {
  readonly kind = 'adaptive';
  private current: number;
  private readonly min: number;
  private readonly max: number;
  private readonly loopLowMs: number;
  private readonly loopHighMs: number;
  private readonly cpuLow: number;
  private readonly cpuHigh: number;
  private readonly cpuStarved: number;
  /** After a decrease, one tick passes before growing again (the decrease needs a tick to show). */
  private cooling = false;

  constructor(options: AdaptiveOptions) {
    if (!(options.min >= 1 && options.max >= options.min))
      throw new Error(`adaptive concurrency needs 1 <= min <= max (got ${options.min}, ${options.max})`);
    this.min = options.min;
    this.max = options.max;
    this.current = clamp(options.initial ?? 2, this.min, this.max);
    this.loopLowMs = options.loopLowMs ?? 20;
    this.loopHighMs = options.loopHighMs ?? 50;
    this.cpuLow = options.cpuLow ?? 0.85;
    this.cpuHigh = options.cpuHigh ?? 1.2;
    this.cpuStarved = options.cpuStarved ?? 0.3;
  }

  limit(): number {
    return this.current;
  }

  update(sample: LoadSample, demand: boolean): void {
    if (sample.loopDelayP99Ms > this.loopHighMs && sample.cpu < this.cpuStarved) {
      // The loop lags while this process hardly gets the CPU: other processes hold the machine. Fewer
      // logins would not give the loop its time back, more would want CPU that is not there: hold.
      return;
    }
    if (sample.loopDelayP99Ms > this.loopHighMs || sample.cpu > this.cpuHigh) {
      this.current = clamp(Math.floor(this.current / 2), this.min, this.max);
      this.cooling = true;
      return;
    }
    if (this.cooling) {
      this.cooling = false;
      return;
    }
    if (demand && sample.loopDelayP99Ms <= this.loopLowMs && sample.cpu <= this.cpuLow)
      this.current = clamp(this.current + 1, this.min, this.max);
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
