/**
 * Replay for audits (design.md §10): an instance's history with the machine state after every event, its
 * state at a moment, and read-model rebuilds that prove the rebuilt rows equal the live ones.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Errors, ZapwireError } from '../../domain/errors.ts';
import type { EventStore } from '../../store/port.ts';
import type { SqlDatabase } from '../../store/sql.ts';
import type { InstanceMachineConfig } from '../../../machines/instance/index.ts';
import { findInstance } from '../../../projections/queries.ts';
import { rebuildEqualityCheck } from '../../../projections/rebuild-check.ts';
import type { ProjectionRunner } from '../../../projections/runner.ts';
import {
  readHistoryPage,
  readStateAt,
  resolveInstanceId,
  MAX_HISTORY_LIMIT,
} from '../../visualizer/audit.ts';
import { requireAdmin, requirePrincipal } from '../auth.ts';
import { errorResponseSchema } from '../errors.ts';

export interface ReplayRoutesOptions {
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly projections: Pick<ProjectionRunner, 'rebuild' | 'status' | 'names'>;
  readonly machineConfig?: InstanceMachineConfig;
}

const errors = {
  400: errorResponseSchema,
  401: errorResponseSchema,
  403: errorResponseSchema,
  404: errorResponseSchema,
  409: errorResponseSchema,
};

const stateIds = { type: 'array', items: { type: 'string' } } as const;
const contextSummary = { type: 'object', additionalProperties: true } as const;

const historyEntry = {
  type: 'object',
  properties: {
    version: { type: 'integer' },
    eventId: { type: 'string' },
    type: { type: 'string' },
    at: { type: 'string' },
    recordedAt: { type: 'string' },
    data: { type: 'object', additionalProperties: true },
    state: { type: 'string' },
    machineState: { type: 'string' },
    stateIds,
  },
} as const;

const historyResponse = {
  type: 'object',
  properties: {
    instance: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } },
    total: { type: 'integer' },
    from: { type: 'integer' },
    limit: { type: 'integer' },
    next: { type: ['integer', 'null'] },
    entries: { type: 'array', items: historyEntry },
    current: {
      type: ['object', 'null'],
      properties: {
        state: { type: 'string' },
        machineState: { type: 'string' },
        stateIds,
        context: contextSummary,
      },
    },
    // ?at= answers with these instead
    at: { type: 'string' },
    state: { type: 'string' },
    machineState: { type: 'string' },
    stateIds,
    version: { type: 'integer' },
    lastEvent: {
      type: ['object', 'null'],
      properties: { version: { type: 'integer' }, type: { type: 'string' }, at: { type: 'string' } },
    },
    context: contextSummary,
  },
} as const;

const notYet = (at: string, createdAt: string) =>
  new ZapwireError(
    'ZW_ERR_NOT_YET_CREATED',
    404,
    `the instance did not exist yet at ${at}: its first event was recorded at ${createdAt}`,
  );

/**
 * The instance a history request may read: an instance token only its own (403 for any other reference,
 * existing or not, so a token learns nothing about other instances), the admin key any.
 */
export async function authorisedInstanceId(
  request: FastifyRequest,
  store: EventStore,
  db: SqlDatabase,
  reference: string,
): Promise<string> {
  const principal = requirePrincipal(request);
  if (principal.role === 'instance') {
    if (reference === principal.instanceId) return reference;
    const own = await findInstance(db, principal.instanceId);
    if (own && reference.toLowerCase() === own.name.toLowerCase()) return own.id;
    throw Errors.forbidden(`instance "${reference}"`);
  }
  const id = await resolveInstanceId(store, db, reference);
  if (!id) throw Errors.instanceNotFound(reference);
  return id;
}

export const replayRoutes: FastifyPluginAsync<ReplayRoutesOptions> = async (app, options) => {
  const { store, db, projections, machineConfig = {} } = options;
  const rebuilding = new Set<string>();

  app.get<{ Params: { id: string }; Querystring: { from?: string; limit?: string; at?: string } }>(
    '/instance/:id/history',
    {
      schema: {
        tags: ['replay'],
        summary:
          'Audit history: every event of the instance with the machine state after it (replayed from the log); ?at=<ISO time> gives the state and context at that moment',
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
        },
        querystring: {
          type: 'object',
          properties: {
            from: { type: 'string', pattern: '^[0-9]{1,9}$', description: 'first stream version (1-based)' },
            limit: {
              type: 'string',
              pattern: '^[0-9]{1,4}$',
              description: `page size, 1-${MAX_HISTORY_LIMIT}`,
            },
            at: { type: 'string', format: 'date-time', description: 'state at this moment (ISO 8601)' },
          },
        },
        response: { 200: historyResponse, ...errors },
      },
    },
    async (request) => {
      const id = await authorisedInstanceId(request, store, db, request.params.id);
      const { at, from, limit } = request.query;
      if (at !== undefined) {
        const moment = new Date(at);
        if (Number.isNaN(moment.getTime())) throw Errors.validation('at: expected an ISO 8601 time');
        const result = await readStateAt(store, id, moment, machineConfig);
        if (result.kind === 'unknown') throw Errors.instanceNotFound(request.params.id);
        if (result.kind === 'not-yet') throw notYet(moment.toISOString(), result.createdAt);
        return { instance: result.instance, ...result.state };
      }
      const limitNumber = limit === undefined ? undefined : Number(limit);
      if (limitNumber !== undefined && (limitNumber < 1 || limitNumber > MAX_HISTORY_LIMIT))
        throw Errors.validation(`limit: expected 1 to ${MAX_HISTORY_LIMIT}`);
      const page = await readHistoryPage(
        store,
        id,
        {
          ...(from === undefined ? {} : { from: Number(from) }),
          ...(limitNumber === undefined ? {} : { limit: limitNumber }),
        },
        machineConfig,
      );
      if (!page) throw Errors.instanceNotFound(request.params.id);
      return page;
    },
  );

  app.get(
    '/admin/projections',
    {
      schema: {
        tags: ['replay'],
        summary: 'Read-model projections and their checkpoints (admin)',
        response: {
          200: {
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
          },
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      return projections.status().map((s) => ({
        name: s.name,
        checkpoint: s.checkpoint,
        lastError: s.lastError ?? null,
        rebuilding: rebuilding.has(s.name),
      }));
    },
  );

  app.post<{ Params: { name: string } }>(
    '/admin/projections/:name/rebuild',
    {
      schema: {
        tags: ['replay'],
        summary:
          'Rebuild a read model from the log while the app runs, and report whether the rebuilt rows equal the live ones (admin)',
        params: {
          type: 'object',
          required: ['name'],
          properties: { name: { type: 'string', minLength: 1, maxLength: 64 } },
        },
        body: { type: ['object', 'null'] },
        response: {
          200: {
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
          },
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const { name } = request.params;
      if (!projections.names().includes(name)) {
        throw new ZapwireError(
          'ZW_ERR_PROJECTION_NOT_FOUND',
          404,
          `no projection named "${name}": one of ${projections.names().join(', ')}`,
        );
      }
      if (rebuilding.has(name)) {
        throw new ZapwireError(
          'ZW_ERR_REBUILD_RUNNING',
          409,
          `projection "${name}" is being rebuilt already`,
        );
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
