/** /ws: live events over WebSocket, optionally replaying from a position first (docs/events.md). */
import '@fastify/websocket';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { normaliseEventNames, UnknownEventNameError, type SinkEventName } from '../../domain/event-names.ts';
import { Errors } from '../../domain/errors.ts';
import type { Principal } from '../../domain/principal.ts';
import type { Sinks } from '../../sinks/index.ts';
import { START, type Checkpoint } from '../../store/port.ts';
import { requirePrincipal } from '../auth.ts';

export interface WsRoutesOptions {
  readonly sinks: Pick<Sinks, 'websocketHub'>;
}

const wsQuery = {
  type: 'object',
  properties: {
    events: { type: 'string', description: 'comma-separated event names (default: all subscribed)' },
    instance: { type: 'string', description: 'admin key: one instance, by id or name' },
    instanceName: { type: 'string', description: 'alias of instance' },
    from: { type: 'string', description: 'resume after this position ("start" = the beginning)' },
    apikey: { type: 'string', description: 'for browsers, which cannot set headers on WebSocket' },
    token: { type: 'string', description: 'alias of apikey' },
  },
} as const;

interface Subscription {
  readonly principal: Principal;
  readonly events: SinkEventName[] | undefined;
  readonly instance: string | undefined;
  readonly from: Checkpoint | undefined;
}

function eventsOf(list: string | undefined): SinkEventName[] | undefined {
  if (list === undefined || list.trim() === '') return undefined;
  try {
    const names = normaliseEventNames(list);
    return names.includes('ALL') ? undefined : (names as SinkEventName[]);
  } catch (error) {
    if (error instanceof UnknownEventNameError)
      throw Errors.validation(error.message, { unknown: error.unknown });
    throw error;
  }
}

type WsQuery = FromSchema<typeof wsQuery>;

/**
 * The query as the schema says it is. This runs in preValidation (before the upgrade), ahead of the
 * schema's own check, so a repeated key still arrives as an array here.
 */
function checkedQuery(query: unknown): WsQuery {
  const record = (typeof query === 'object' && query !== null ? query : {}) as Record<string, unknown>;
  for (const key of Object.keys(wsQuery.properties)) {
    const value = record[key];
    if (value !== undefined && typeof value !== 'string') {
      throw Errors.validation(
        `${key}: give it once, as text (it came ${Array.isArray(value) ? 'repeated' : 'as another type'})`,
      );
    }
  }
  return record as WsQuery;
}

export const wsRoutes: FastifyPluginAsync<WsRoutesOptions> = async (app, { sinks }) => {
  // Registered once at the root by the app: two registrations would each answer every upgrade.
  if (!app.hasDecorator('websocketServer')) {
    throw new Error('register @fastify/websocket once at the root before the /ws route');
  }
  const subscriptions = new WeakMap<FastifyRequest, Subscription>();
  /** The query as read before validation (a repeated key or an unknown event name is a 400 there). */
  const queries = new WeakMap<FastifyRequest, { q: WsQuery; events: SinkEventName[] | undefined }>();

  app.get<{ Querystring: WsQuery }>(
    '/ws',
    {
      websocket: true,
      config: {
        access: 'caller',
        keyInQuery: true,
        // An instance token is limited to its own instance; the admin key may name one, or none for all.
        instanceFrom: ['query.instance', 'query.instanceName'],
        instanceOptional: true,
      },
      schema: {
        tags: ['events'],
        summary: 'Live events over WebSocket; ?from=<position> replays first (see docs/events.md)',
        querystring: wsQuery,
      },
      // Before validation, so a repeated key is a 400 that says so.
      preValidation: async (request) => {
        const q = checkedQuery(request.query);
        queries.set(request, { q, events: eventsOf(q.events) });
      },
      // After the instance is resolved (a preHandler of the app's, which runs before the route's own).
      preHandler: async (request) => {
        const principal = requirePrincipal(request);
        const read = queries.get(request);
        if (!read) throw new Error('the /ws query was not read before validation');
        const { q, events } = read;
        const instance = principal.role === 'admin' ? request.instanceIfNamed?.id : undefined;
        let from: Checkpoint | undefined;
        if (q.from !== undefined) {
          from = (q.from === '' || q.from.toLowerCase() === 'start' ? START : q.from) as Checkpoint;
          if (!(await sinks.websocketHub.acceptsPosition(from))) {
            throw Errors.validation(
              `from: "${q.from}" is not a position; use the "position" of an event you received`,
            );
          }
        }
        // A clear 429 before the upgrade; the hub checks again when the socket joins (races, 4029).
        const refused = sinks.websocketHub.refusal(principal, from);
        if (refused !== undefined) throw Errors.tooMany(refused);
        subscriptions.set(request, { principal, events, instance, from });
      },
    },
    (socket, request) => {
      const subscription = subscriptions.get(request);
      if (!subscription) {
        socket.close(1011, 'unauthenticated');
        return;
      }
      void sinks.websocketHub.attach(socket, {
        principal: subscription.principal,
        ...(subscription.events ? { events: subscription.events } : {}),
        ...(subscription.instance ? { instance: subscription.instance } : {}),
        ...(subscription.from !== undefined ? { from: subscription.from } : {}),
      });
    },
  );
};
