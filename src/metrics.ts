/**
 * The process's one Prometheus registry, which /metrics serves: the Node.js process metrics, and the
 * series each part registers in it (the sinks: src/sinks/metrics.ts; the cluster member:
 * src/cluster/metrics.ts; the read model and the projections: projections/metrics.ts).
 */
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export interface GaugeSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface GaugeDefinition {
  /** Full metric name, e.g. `zapwire_instances`. */
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Called at every scrape; returns the current samples (previous ones are dropped). */
  readonly collect: () => readonly GaugeSample[] | Promise<readonly GaugeSample[]>;
}

export class MetricsRegistry {
  /** Where prom-client metrics register (`registers: [metrics.prometheus]`). */
  readonly prometheus = new Registry();

  /** `processMetrics`: the Node.js process metrics (`zapwire_process_*`, `zapwire_nodejs_*`). Default true. */
  constructor(options: { readonly processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false)
      collectDefaultMetrics({ register: this.prometheus, prefix: 'zapwire_' });
  }

  /** Adds a gauge whose samples are computed at scrape time. */
  registerGauge(definition: GaugeDefinition): void {
    new Gauge({
      name: definition.name,
      help: definition.help,
      labelNames: [...definition.labelNames],
      registers: [this.prometheus],
      async collect() {
        this.reset();
        for (const sample of await definition.collect()) this.set(sample.labels, sample.value);
      },
    });
  }

  /** The text exposition format. */
  render(): Promise<string> {
    return this.prometheus.metrics();
  }

  get contentType(): string {
    return this.prometheus.contentType;
  }
}
