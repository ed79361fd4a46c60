/**
 * Prometheus metrics for delivery (per sink and instance), registered in the process's registry
 * (src/metrics.ts), which /metrics serves.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import { MetricsRegistry } from '../metrics.ts';
import type { SinkKind } from './routing.ts';

export interface InstanceLabel {
  readonly id: string;
  readonly name: string;
}

type Labels = { sink: SinkKind; instance_id: string; instance: string };

export class SinkMetrics {
  private readonly delivered: Counter<keyof Labels>;
  private readonly retried: Counter<keyof Labels>;
  private readonly deadLettered: Counter<keyof Labels>;
  private readonly unroutable: Counter<keyof Labels>;
  private readonly lag: Gauge<keyof Labels>;
  private readonly latency: Histogram<'sink'>;
  private readonly connected: Gauge<'sink'>;
  private readonly slowClosed: Counter;
  private readonly wsClients: Gauge;

  /** `registry`: where to count (default: a registry of their own, without the process metrics). */
  constructor(readonly registry: MetricsRegistry = new MetricsRegistry({ processMetrics: false })) {
    const labelNames = ['sink', 'instance_id', 'instance'] as const;
    const registers = [registry.prometheus];
    this.delivered = new Counter({
      name: 'zapwire_sink_delivered_total',
      help: 'Events delivered (webhook 2xx, broker confirm, WebSocket frame written), per sink and instance',
      labelNames,
      registers,
    });
    this.retried = new Counter({
      name: 'zapwire_sink_retried_total',
      help: 'Failed delivery attempts that will be retried, per sink and instance',
      labelNames,
      registers,
    });
    this.deadLettered = new Counter({
      name: 'zapwire_sink_dead_lettered_total',
      help: 'Events given up on after the last attempt (see the dead letters / webhook delivery log)',
      labelNames,
      registers,
    });
    this.unroutable = new Counter({
      name: 'zapwire_sink_unroutable_total',
      help: 'Messages the broker returned because no queue was bound for their routing key (RabbitMQ), per instance',
      labelNames,
      registers,
    });
    this.lag = new Gauge({
      name: 'zapwire_sink_lag_seconds',
      help: 'Age of the last delivered event at delivery (store time to delivery), per sink and instance',
      labelNames,
      registers,
    });
    this.latency = new Histogram({
      name: 'zapwire_sink_delivery_seconds',
      help: 'Store time to delivery, per sink',
      labelNames: ['sink'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.connected = new Gauge({
      name: 'zapwire_sink_connected',
      help: '1 while the sink is connected to its broker (RabbitMQ, NATS), else 0',
      labelNames: ['sink'],
      registers,
    });
    this.slowClosed = new Counter({
      name: 'zapwire_websocket_slow_consumers_closed_total',
      help: 'WebSocket clients closed with 4008 because they did not keep up',
      registers,
    });
    this.wsClients = new Gauge({
      name: 'zapwire_websocket_clients',
      help: 'Open /ws connections',
      registers,
    });
  }

  deliveredOne(sink: SinkKind, instance: InstanceLabel, storedAt: Date, now = Date.now()): void {
    const labels = this.labels(sink, instance);
    const age = Math.max(0, (now - storedAt.getTime()) / 1000);
    this.delivered.inc(labels);
    this.lag.set(labels, age);
    this.latency.observe({ sink }, age);
  }

  retriedOne(sink: SinkKind, instance: InstanceLabel): void {
    this.retried.inc(this.labels(sink, instance));
  }

  deadLetteredOne(sink: SinkKind, instance: InstanceLabel): void {
    this.deadLettered.inc(this.labels(sink, instance));
  }

  /** A message the broker could not route (mandatory publish returned); also counted as dead-lettered. */
  unroutableOne(sink: SinkKind, instance: InstanceLabel): void {
    this.unroutable.inc(this.labels(sink, instance));
    this.deadLettered.inc(this.labels(sink, instance));
  }

  setConnected(sink: SinkKind, up: boolean): void {
    this.connected.set({ sink }, up ? 1 : 0);
  }

  slowConsumerClosed(): void {
    this.slowClosed.inc();
  }

  websocketClients(count: number): void {
    this.wsClients.set(count);
  }

  /** Drops a deleted instance's series so they stop being exported. */
  async forgetInstance(instanceId: string): Promise<void> {
    for (const metric of [this.delivered, this.retried, this.deadLettered, this.unroutable, this.lag]) {
      const { values } = await metric.get();
      for (const { labels } of values) {
        if (labels.instance_id === instanceId) metric.remove(labels as Labels);
      }
    }
  }

  private labels(sink: SinkKind, instance: InstanceLabel): Labels {
    return { sink, instance_id: instance.id, instance: instance.name };
  }
}
