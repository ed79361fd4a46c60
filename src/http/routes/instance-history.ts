/**
 * /instance/:id/history: an instance's audit history, with the machine state after every event
 * (replayed from the log), or its state and context at a moment (`?at=`). Paged (`from`, `limit`; 100 by
 * default, 1000 at most) and folded from cached snapshots, so a call reads and folds a bounded part of the
 * stream once the cache is warm (src/visualizer/audit.ts).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import type { EventLog } from '../../store/port.ts';
import type { InstanceMachineConfig } from '../../../machines/instance/index.ts';
import {
  HistorySnapshots,
  readHistoryPage,
  readStateAt,
  DEFAULT_HISTORY_LIMIT,
  MAX_HISTORY_LIMIT,
} from '../../visualizer/audit.ts';
import { errorResponses, idParam, type IdParam } from '../schemas.ts';

export interface InstanceHistoryRoutesOptions {
  readonly store: EventLog;
  readonly machineConfig?: InstanceMachineConfig;
}

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

/** A page of history, or (with ?at=) the state at a moment. */
export const historyResponse = {
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

const historyQuery = {
  type: 'object',
  properties: {
    from: { type: 'string', pattern: '^[0-9]{1,9}$', description: 'first stream version (1-based)' },
    limit: {
      type: 'string',
      pattern: '^[0-9]{1,4}$',
      description: `page size, 1-${MAX_HISTORY_LIMIT} (default ${DEFAULT_HISTORY_LIMIT})`,
    },
    at: { type: 'string', format: 'date-time', description: 'state at this moment (ISO 8601)' },
  },
} as const;

export const instanceHistoryRoutes: FastifyPluginAsync<InstanceHistoryRoutesOptions> = async (
  app,
  { store, machineConfig = {} },
) => {
  // Folds at versions, shared by every call of this app: a call starts from the nearest one.
  const snapshots = new HistorySnapshots();
  app.get<{ Params: IdParam; Querystring: FromSchema<typeof historyQuery> }>(
    '/instance/:id/history',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['replay'],
        summary:
          'Audit history: every event of the instance with the machine state after it (replayed from the log); ?at=<ISO time> gives the state and context at that moment',
        params: idParam,
        querystring: historyQuery,
        response: { 200: historyResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      const { at, from, limit } = request.query;
      if (at !== undefined) {
        const moment = new Date(at);
        if (Number.isNaN(moment.getTime())) throw Errors.validation('at: expected an ISO 8601 time');
        const result = await readStateAt(store, id, moment, machineConfig, snapshots);
        if (result.kind === 'unknown') throw Errors.instanceNotFound(request.params.id);
        if (result.kind === 'not-yet') throw Errors.notYetCreated(moment.toISOString(), result.createdAt);
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
        snapshots,
      );
      if (!page) throw Errors.instanceNotFound(request.params.id);
      return page;
    },
  );
};
