/**
 * The read model's gauges in the process's registry (src/metrics.ts): instances per API state, and the
 * events each projection skipped because it could not apply them.
 */
import type { MetricsRegistry } from '../src/metrics.ts';
import type { ReadModel } from './read-model.ts';
import type { ProjectionRunner } from './runner.ts';

export function registerReadModelMetrics(
  metrics: MetricsRegistry,
  readModel: Pick<ReadModel, 'countsByState'>,
  projections: Pick<ProjectionRunner, 'poisonCounts'>,
): void {
  metrics.registerGauge({
    name: 'zapwire_instances',
    help: 'Instances by API state',
    labelNames: ['state'],
    collect: async () =>
      [...(await readModel.countsByState())].map(([state, value]) => ({ labels: { state }, value })),
  });
  metrics.registerGauge({
    name: 'zapwire_projection_poison_events',
    help: 'Events a projection skipped because it could not apply them (see /health)',
    labelNames: ['projection'],
    collect: async () =>
      [...(await projections.poisonCounts())].map(([projection, value]) => ({
        labels: { projection },
        value,
      })),
  });
}
