/** Prometheus gauges of the restore after a start (scheduler.ts): how far it got, and how long it took. */
import { Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../metrics.ts';
import type { RestoreProgress } from './scheduler.ts';

export function registerRestoreMetrics(metrics: MetricsRegistry, progress: () => RestoreProgress): void {
  new Gauge({
    name: 'zapwire_restore_seconds',
    help: 'Seconds from the start of the last restore until every instance had its turn (open, or settled otherwise); the time so far while it runs',
    registers: [metrics.prometheus],
    collect() {
      this.set(progress().seconds);
    },
  });
  new Gauge({
    name: 'zapwire_restore_instances',
    help: 'Instances of the last restore: done (restored) and total (queued)',
    labelNames: ['state'],
    registers: [metrics.prometheus],
    collect() {
      const { done, total } = progress();
      this.set({ state: 'done' }, done);
      this.set({ state: 'total' }, total);
    },
  });
  new Gauge({
    name: 'zapwire_restore_concurrency',
    help: 'Restores allowed at once now (RESTORE_CONCURRENCY, or what the adaptive policy chose)',
    registers: [metrics.prometheus],
    collect() {
      this.set(progress().concurrency);
    },
  });
}
