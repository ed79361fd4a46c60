/**
 * /admin/*: operator tools. The read-model projections with their checkpoints, and a rebuild from the
 * log while the app runs that reports whether the rebuilt rows equal the live ones; the cluster's nodes
 * with their instances and lease ages.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import type { SqlDatabase } from '../../store/sql.ts';
import { rebuildEqualityCheck } from '../../../projections/rebuild-check.ts';
import type { ProjectionRunner } from '../../../projections/runner.ts';
import type { ClusterOverview } from '../../cluster/port.ts';
import { errorResponses } from '../schemas.ts';

export interface AdminRoutesOptions {
  readonly db: SqlDatabase;
  readonly projections: Pick<ProjectionRunner, 'rebuild' | 'status' | 'names'>;
  /** GET /admin/cluster. */
  readonly cluster?: { overview(): Promise<ClusterOverview> };
}

const leaseItem = {
  type: 'object',
  properties: {
    instanceId: { type: 'string' },
    epoch: { type: 'integer' },
    leaseAgeMs: { type: 'integer' },
    expiresInMs: { type: 'integer' },
  },
} as const;

const clusterResponse = {
  type: 'object',
  properties: {
    selfId: { type: 'string' },
    mode: { type: 'string', enum: ['cluster', 'single'] },
    leaseMs: { type: 'integer' },
    heartbeatMs: { type: 'integer' },
    nodes: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          nodeId: { type: 'string' },
          address: { type: 'string' },
          self: { type: 'boolean' },
          startedAt: { type: 'string' },
          heartbeatAt: { type: 'string' },
          instances: { type: 'array', items: leaseItem },
        },
      },
    },
    unowned: { type: 'array', items: { type: 'string' } },
  },
} as const;

const projectionsResponse = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      name: { type: 'string' },
      checkpoint: { type: 'string' },
      lastError: { type: ['string', 'null'] },
      rebuilding: { type: 'boolean' },
    },
  },
} as const;

const rebuildParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;

const rebuildResponse = {
  type: 'object',
  properties: {
    projection: { type: 'string' },
    equal: { type: 'boolean' },
    events: { type: 'integer' },
    durationMs: { type: 'integer' },
    checkpoint: { type: 'string' },
    tables: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          table: { type: 'string' },
          liveRows: { type: 'integer' },
          rebuiltRows: { type: 'integer' },
          key: { type: 'array', items: { type: 'string' } },
          missing: { type: 'integer' },
          extra: { type: 'integer' },
          changed: { type: 'integer' },
          samples: { type: 'object', additionalProperties: true },
        },
      },
    },
  },
} as const;

export const adminRoutes: FastifyPluginAsync<AdminRoutesOptions> = async (
  app,
  { db, projections, cluster },
) => {
  const rebuilding = new Set<string>();

  if (cluster) {
    app.get(
      '/admin/cluster',
      {
        config: { access: 'admin' },
        schema: {
          tags: ['cluster'],
          summary:
            'Live nodes, the instances each owns with their lease ages, and instances no node holds (admin)',
          response: { 200: clusterResponse, ...errorResponses },
        },
      },
      () => cluster.overview(),
    );
  }

  app.get(
    '/admin/projections',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['replay'],
        summary: 'Read-model projections and their checkpoints (admin)',
        response: { 200: projectionsResponse, ...errorResponses },
      },
    },
    async () =>
      projections.status().map((s) => ({
        name: s.name,
        checkpoint: s.checkpoint,
        lastError: s.lastError ?? null,
        rebuilding: rebuilding.has(s.name),
      })),
  );

  app.post<{ Params: FromSchema<typeof rebuildParams> }>(
    '/admin/projections/:name/rebuild',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['replay'],
        summary:
          'Rebuild a read model from the log while the app runs, and report whether the rebuilt rows equal the live ones (admin)',
        params: rebuildParams,
        body: { type: ['object', 'null'] },
        response: { 200: rebuildResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { name } = request.params;
      if (!projections.names().includes(name)) {
        throw Errors.projectionNotFound(name, projections.names());
      }
      if (rebuilding.has(name)) {
        throw Errors.rebuildRunning(name);
      }
      rebuilding.add(name);
      const check = rebuildEqualityCheck(db);
      try {
        const { events, durationMs } = await projections.rebuild(name, check);
        const comparison = check.result();
        if (!comparison) throw new Error('the rebuild finished without a comparison');
        request.log.info(
          { projection: name, events, durationMs, equal: comparison.equal },
          'projection rebuilt from the log',
        );
        return { projection: name, events, durationMs, ...comparison };
      } finally {
        rebuilding.delete(name);
        await check.cleanUp().catch(() => undefined);
      }
    },
  );
};
