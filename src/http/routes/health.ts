import type { FastifyPluginAsync } from 'fastify';
import type { EventLog } from '../../store/port.ts';

export interface HealthRoutesOptions {
  readonly store: EventLog;
  readonly startedAt: Date;
  /** Conditions an operator must look at (e.g. a projection skipped an event); none when all is well. */
  readonly alerts?: () => Promise<readonly string[]>;
  /** Cluster mode: this node's id and whether it holds its leases (src/cluster). */
  readonly cluster?: () => ClusterHealth;
  /** Why the store is unreachable, when zapwire knows (it restarts its embedded PostgreSQL); no paths. */
  readonly storeOutage?: () => string | undefined;
  /** Open instances on this node per health state (src/health); counts only. */
  readonly instanceHealth?: () => InstanceHealthCounts;
  /** The restore after the start: instances reconnected so far of those to reconnect. */
  readonly restoring?: () => RestoringHealth;
}

export interface InstanceHealthCounts {
  readonly healthy: number;
  readonly degraded: number;
  readonly down: number;
  readonly needsAttention: number;
}

export interface RestoringHealth {
  readonly done: number;
  readonly total: number;
}

export interface ClusterHealth {
  readonly nodeId: string;
  readonly mode: 'cluster' | 'single';
  /** Instance leases this node holds. */
  readonly instances: number;
  /** False when this node could not renew its leases in time (its instances may be moving elsewhere). */
  readonly leasesHeld: boolean;
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (
  app,
  { store, startedAt, alerts, cluster, storeOutage, instanceHealth, restoring },
) => {
  app.get(
    '/health',
    {
      config: { access: 'anyone' },
      schema: {
        tags: ['health'],
        summary:
          'Liveness, store reachability and alerts (no API key needed). "degraded": running, but an operator must look at the alerts',
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['ok', 'degraded'] },
              store: { type: 'string' },
              uptimeSeconds: { type: 'number' },
              alerts: { type: 'array', items: { type: 'string' } },
              instanceHealth: {
                type: 'object',
                description:
                  'Open instances on this node by health (GET /instance/:id/health says why); the service status above does not depend on them',
                properties: {
                  healthy: { type: 'integer' },
                  degraded: { type: 'integer' },
                  down: { type: 'integer' },
                  needsAttention: { type: 'integer' },
                },
              },
              restoring: {
                type: 'object',
                description:
                  'The restore after the start: instances restored (reconnected, or settled otherwise) of those queued; done = total once every one has had its turn',
                properties: { done: { type: 'integer' }, total: { type: 'integer' } },
              },
              cluster: {
                type: 'object',
                properties: {
                  nodeId: { type: 'string' },
                  mode: { type: 'string', enum: ['cluster', 'single'] },
                  instances: { type: 'integer' },
                  leasesHeld: { type: 'boolean' },
                },
              },
            },
          },
          503: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['unavailable'] },
              store: { type: 'string' },
              error: { type: 'string' },
            },
          },
        },
      },
    },
    async (request, reply) => {
      try {
        await store.ping();
      } catch (error) {
        // The driver's message may name hosts, users or paths: it goes to the log, not to anonymous callers.
        request.log.error({ err: error }, 'health: the event store is unreachable');
        const known = storeOutage?.();
        return reply
          .status(503)
          .header('Retry-After', '5')
          .send({
            status: 'unavailable',
            store: store.kind,
            error: known
              ? `the event store is unreachable: ${known}; see the server log`
              : 'the event store is unreachable; see the server log',
          });
      }
      const raised = [
        ...(alerts ? await alerts().catch(() => ['could not read the alerts; see the server log']) : []),
      ];
      const node = cluster?.();
      const restore = restoring?.();
      if (node && !node.leasesHeld)
        raised.push('this node could not renew its instance leases in time: see the server log');
      return {
        status: raised.length > 0 ? 'degraded' : 'ok',
        store: store.kind,
        uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
        alerts: raised,
        ...(instanceHealth ? { instanceHealth: instanceHealth() } : {}),
        ...(restore ? { restoring: { done: restore.done, total: restore.total } } : {}),
        ...(node
          ? {
              cluster: {
                nodeId: node.nodeId,
                mode: node.mode,
                instances: node.instances,
                leasesHeld: node.leasesHeld,
              },
            }
          : {}),
      };
    },
  );
};
