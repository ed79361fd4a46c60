/**
 * Prometheus metrics of this node's part in the cluster, labelled with the node id so that the series of
 * every node can sit side by side in one Prometheus.
 */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../metrics.ts';
import type { ClusterMember } from './node.ts';

export function registerClusterMetrics(metrics: MetricsRegistry, member: ClusterMember): void {
  const registry = metrics.prometheus;
  const labels = { node: member.selfId };
  new Gauge({
    name: 'zapwire_cluster_instances_owned',
    help: 'Instance leases this node holds',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.set(labels, member.heldInstances().length);
    },
  });
  new Gauge({
    name: 'zapwire_cluster_nodes',
    help: 'Live nodes in the cluster, as this node sees them',
    labelNames: ['node'],
    registers: [registry],
    async collect() {
      this.set(labels, (await member.nodes()).length);
    },
  });
  const counters: [string, string, keyof ClusterMember['counters']][] = [
    [
      'zapwire_cluster_lease_renew_failures_total',
      'Lease renewals that failed (database unreachable)',
      'renewFailures',
    ],
    ['zapwire_cluster_handovers_total', 'Instances this node handed over (rebalance, SIGTERM)', 'handOvers'],
    ['zapwire_cluster_takeovers_total', 'Expired leases of other nodes this node took over', 'takenOver'],
    [
      'zapwire_cluster_leases_lost_total',
      'Leases this node lost to another node (it was stalled or cut off)',
      'lost',
    ],
  ];
  for (const [name, help, key] of counters) {
    new Counter({
      name,
      help,
      labelNames: ['node'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc(labels, member.counters[key]);
      },
    });
  }
}
