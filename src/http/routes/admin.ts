/**
 * /admin/*: operator tools. The read-model projections with their checkpoints, and a rebuild from the
 * log while the app runs that reports whether the rebuilt rows equal the live ones; the dead letters of
 * every reader of the log (projections, webhook, RabbitMQ, NATS), listed and sent through their reader
 * again; the cluster's nodes with their instances and lease ages.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import { DeadLetterRetryUnavailableError } from '../../store/errors.ts';
import type { Consumers, DeadLetter } from '../../store/port.ts';
import type { SqlDatabase } from '../../store/sql.ts';
import { rebuildEqualityCheck } from '../../../projections/rebuild-check.ts';
import type { ProjectionRunner } from '../../../projections/runner.ts';
import type { ClusterOverview } from '../../cluster/port.ts';
import { requirePrincipal } from '../auth.ts';
import { errorResponses } from '../schemas.ts';

export interface AdminRoutesOptions {
  readonly db: SqlDatabase;
  readonly projections: Pick<ProjectionRunner, 'rebuild' | 'status' | 'names' | 'poisonCounts'>;
  /** The one dead-letter store, and the readers that retry its entries. */
  readonly deadLetters: Pick<Consumers, 'findDeadLetters' | 'deadLetter' | 'retryDeadLetter'>;
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
      deadLetters: { type: 'integer', description: 'events it skipped (GET /admin/dead-letters)' },
    },
  },
} as const;

const deadLetterView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    subscription: {
      type: 'string',
      description:
        'the reader that gave up: projection:<name>, sink-webhook, sink-webhook-global, sink-rabbitmq, sink-nats',
    },
    instanceId: { type: ['string', 'null'] },
    eventId: { type: 'string' },
    eventType: { type: 'string' },
    stream: { type: 'string' },
    position: { type: 'string' },
    error: { type: 'string' },
    attempts: { type: 'integer' },
    failedAt: { type: 'string', format: 'date-time' },
    detail: { type: 'object', additionalProperties: true },
  },
} as const;

const deadLettersQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    subscription: {
      type: 'string',
      minLength: 1,
      maxLength: 512,
      pattern: '^[A-Za-z0-9:_.,-]+$',
      description: 'only these readers (comma-separated), e.g. sink-webhook or projection:instances',
    },
    instance: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      description: 'only this instance (id or name)',
    },
    before: { type: 'string', pattern: '^\\d{1,18}$', description: 'the `next` of the previous page' },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  },
} as const;

const deadLetterParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^\\d{1,18}$' } },
} as const;

const retryResponse = {
  type: 'object',
  properties: {
    outcome: {
      type: 'string',
      enum: ['retried', 'queued', 'failed'],
      description:
        'retried: handled again, the entry removed; queued: a redelivery was queued (webhook), the entry removed; failed: it failed again, the entry stays with the new error',
    },
    message: { type: 'string' },
    detail: { type: 'object', additionalProperties: true },
    deadLetter: deadLetterView,
  },
} as const;

function deadLetterJson(dead: DeadLetter): Record<string, unknown> {
  return {
    id: dead.id,
    subscription: dead.subscription,
    instanceId: dead.instanceId ?? null,
    eventId: dead.eventId,
    eventType: dead.eventType,
    stream: dead.stream,
    position: dead.position,
    error: dead.error,
    attempts: dead.attempts,
    failedAt: dead.failedAt.toISOString(),
    detail: dead.detail,
  };
}

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
  { db, projections, cluster, deadLetters },
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
    async () => {
      const skipped = await projections.poisonCounts();
      return projections.status().map((s) => ({
        name: s.name,
        checkpoint: s.checkpoint,
        lastError: s.lastError ?? null,
        rebuilding: rebuilding.has(s.name),
        deadLetters: skipped.get(s.name) ?? 0,
      }));
    },
  );

  app.get<{ Querystring: FromSchema<typeof deadLettersQuery> }>(
    '/admin/dead-letters',
    {
      config: { access: 'admin', instanceFrom: ['query.instance'], instanceOptional: true },
      schema: {
        tags: ['replay'],
        summary:
          'Events a reader of the log gave up on (projections, webhook, RabbitMQ, NATS), newest first; page with ?before=<next> (admin)',
        querystring: deadLettersQuery,
        response: {
          200: {
            type: 'object',
            properties: {
              deadLetters: { type: 'array', items: deadLetterView },
              next: { type: ['string', 'null'] },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { subscription, before } = request.query;
      const limit = request.query.limit ?? 50;
      const instanceId = request.instanceIfNamed?.id;
      const letters = await deadLetters.findDeadLetters({
        ...(subscription ? { subscriptions: subscription.split(',').filter((name) => name !== '') } : {}),
        ...(instanceId !== undefined ? { instanceId } : {}),
        ...(before !== undefined ? { before } : {}),
        limit,
      });
      return {
        deadLetters: letters.map(deadLetterJson),
        next: letters.length === limit ? (letters.at(-1)?.id ?? null) : null,
      };
    },
  );

  app.post<{ Params: FromSchema<typeof deadLetterParams> }>(
    '/admin/dead-letters/:id/retry',
    {
      config: { access: 'admin', runsOn: 'any' },
      schema: {
        tags: ['replay'],
        summary:
          'Send a dead letter through the reader that gave up on it again: a projection applies it, RabbitMQ or NATS publish it, the webhook queues a redelivery (admin)',
        params: deadLetterParams,
        body: { type: ['object', 'null'] },
        response: { 200: retryResponse, 202: retryResponse, ...errorResponses },
      },
    },
    async (request, reply) => {
      requirePrincipal(request);
      const { id } = request.params;
      const dead = await deadLetters.deadLetter(id);
      if (!dead) throw Errors.deadLetterNotFound(id);
      let result;
      try {
        result = await deadLetters.retryDeadLetter(id, 'admin');
      } catch (error) {
        if (error instanceof DeadLetterRetryUnavailableError) throw Errors.retryUnavailable(error.message);
        throw error;
      }
      // Gone between the read and the retry (another admin retried it, the stream was deleted).
      if (!result) throw Errors.deadLetterNotFound(id);
      request.log.info(
        { deadLetter: id, subscription: dead.subscription, outcome: result.outcome },
        'dead letter retried',
      );
      reply.code(result.outcome === 'queued' ? 202 : 200);
      return {
        outcome: result.outcome,
        message: result.message,
        detail: result.detail ?? {},
        deadLetter: deadLetterJson(dead),
      };
    },
  );

  app.post<{ Params: FromSchema<typeof rebuildParams> }>(
    '/admin/projections/:name/rebuild',
    {
      config: { access: 'admin', runsOn: 'any' },
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
