/**
 * The load the restore controller reads: how late this process's event loop runs a timer (p99 over the
 * tick) and its CPU (user + system over the tick, as a fraction of one core). The lag is sampled with a
 * 20 ms interval timer of its own, only while a restore runs: perf_hooks' monitorEventLoopDelay samples
 * per loop turn (a 300 ms stall among many quick turns stays under its p99) and, on Node 20, records a
 * long stall as a fraction of its length; a timer's lateness is what a request arriving then would wait.
 */
import type { LoadSample } from './concurrency.ts';

export interface LoadSignal {
  start(): void;
  /** What happened since the previous sample (or start), and starts a new window. */
  sample(): LoadSample;
  stop(): void;
}

const INTERVAL_MS = 20;

export class ProcessLoadSignal implements LoadSignal {
  private timer: NodeJS.Timeout | undefined;
  private lags: number[] = [];
  private lastFired = 0;
  private cpuAt = process.cpuUsage();
  private wallAt = performance.now();

  start(): void {
    if (this.timer) return;
    this.lags = [];
    this.lastFired = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      this.lags.push(Math.max(0, now - this.lastFired - INTERVAL_MS));
      this.lastFired = now;
    }, INTERVAL_MS);
    this.timer.unref();
    this.cpuAt = process.cpuUsage();
    this.wallAt = performance.now();
  }

  sample(): LoadSample {
    const cpu = process.cpuUsage(this.cpuAt);
    const wall = performance.now() - this.wallAt;
    this.cpuAt = process.cpuUsage();
    this.wallAt = performance.now();
    // A stall still going on counts too (its timer has not fired yet).
    const pending = this.timer ? Math.max(0, performance.now() - this.lastFired - INTERVAL_MS) : 0;
    const lags = [...this.lags, pending].sort((a, b) => a - b);
    this.lags = [];
    const loopDelayP99Ms = lags[Math.min(lags.length - 1, Math.ceil(lags.length * 0.99) - 1)] ?? 0;
    return { loopDelayP99Ms, cpu: wall > 0 ? (cpu.user + cpu.system) / 1000 / wall : 0 };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.lags = [];
  }
}
