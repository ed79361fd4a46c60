/**
 * Puts the health monitor together from the runtime and the sinks (main.ts calls `startHealth`): what it
 * measures, what it does, where its verdicts are read (WhatsApp's send refusals from the log), and its
 * per-instance Prometheus gauges.
 */
import type { Logger } from 'pino';
import { instanceIdOfStream } from '../domain/events.ts';
import type { InstanceRuntime } from '../runtime/instance-runtime.ts';
import type { Sinks } from '../sinks/index.ts';
import type { EventLog } from '../store/port.ts';
import type { MetricsRegistry } from '../metrics.ts';
import { HealthMonitor } from './monitor.ts';
import type { HealthSettings, HealthState } from './types.ts';

const STATE_CODE: Readonly<Record<HealthState, number>> = { healthy: 0, degraded: 1, down: 2 };

export interface StartedHealth {
  readonly monitor: HealthMonitor;
  stop(): void;
}

export function startHealth(options: {
  readonly settings: HealthSettings;
  readonly runtime: InstanceRuntime;
  readonly sinks: Sinks;
  readonly store: Pick<EventLog, 'onAppended'>;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
}): StartedHealth {
  const { runtime, sinks, logger } = options;
  const monitor = new HealthMonitor(
    options.settings,
    {
      openInstances: () => runtime.openInstances(),
      probe: (id) => runtime.connections.get(id)?.probe,
      pipeline: (id) => runtime.pipelineFigures(id),
      sinkLags: (id) => sinks.sinkLags(id),
      restriction: (id) => runtime.outbox.restrictionOf(id),
    },
    {
      record: (id, events) => runtime.recordBeside(id, events),
      reconnect: (id) => runtime.healReconnect(id),
      restartActor: (id) => runtime.healRestartActor(id),
      warn: (instanceId, message, error) => logger.warn({ instanceId, err: error }, `health: ${message}`),
    },
  );
  // WhatsApp's refusals of sends are facts in the log (SendingRestricted / SendingResumed, recorded by the
  // outbox): whichever stream of the instance holds them, the monitor hears them as they are appended.
  const unsubscribe = options.store.onAppended((result, stream) => {
    const instanceId = instanceIdOfStream(stream);
    if (!instanceId) return;
    for (const event of result.events) {
      if (event.type === 'InstanceDeleted') monitor.forget(instanceId);
      else monitor.observe(instanceId, event.type, event.data);
    }
  });
  options.metrics.registerGauge({
    name: 'zapwire_instance_health',
    help: 'Health of each open instance on this node: 0 healthy, 1 degraded, 2 down',
    labelNames: ['instance_id', 'needs_attention'],
    collect: () =>
      monitor.watched().map(({ instanceId, health }) => ({
        labels: { instance_id: instanceId, needs_attention: String(health.needsAttention) },
        value: STATE_CODE[health.state],
      })),
  });
  options.metrics.registerGauge({
    name: 'zapwire_instance_health_link',
    help: 'Figure of each measured health link: transport and delivery round trip (ms), decryption failure share (0-1), pipeline append latency (ms) or webhook events behind',
    labelNames: ['instance_id', 'link', 'unit'],
    collect: () =>
      monitor.watched().flatMap(({ instanceId, health }) =>
        health.links
          .filter((l) => l.figure !== null)
          .map((l) => ({
            labels: { instance_id: instanceId, link: l.link, unit: l.unit ?? '' },
            value: l.figure!,
          })),
      ),
  });
  options.metrics.registerGauge({
    name: 'zapwire_instance_health_link_ok',
    help: 'Whether each health link of an open instance is ok (1), failing (0); unmeasured links are left out',
    labelNames: ['instance_id', 'link'],
    collect: () =>
      monitor.watched().flatMap(({ instanceId, health }) =>
        health.links
          .filter((l) => l.state !== 'unknown')
          .map((l) => ({
            labels: { instance_id: instanceId, link: l.link },
            value: l.state === 'ok' ? 1 : 0,
          })),
      ),
  });
  monitor.start();
  return {
    monitor,
    stop() {
      monitor.stop();
      unsubscribe();
    },
  };
}
