/**
 * Event delivery routes (docs/events.md): the live WebSocket, Prometheus metrics, the webhook delivery log
 * with redelivery, and webhook secret rotation. Register once; dependencies come as plugin options.
 */
import '@fastify/websocket';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { normaliseEventNames, UnknownEventNameError, type SinkEventName } from '../../domain/event-names.ts';
import { Errors, ZapwireError } from '../../domain/errors.ts';
import type { Sinks } from '../../sinks/index.ts';
import type { DeliveryStatus, DeliveryTarget, DeliveryView } from '../../sinks/webhook/delivery-log.ts';
import { deliveryErrorForTenant } from '../../sinks/webhook/tenant-view.ts';
import { START, type Checkpoint } from '../../store/port.ts';
import { errorResponseSchema } from '../errors.ts';

export type EventsPrincipal =
  { readonly role: 'admin' } | { readonly role: 'instance'; readonly instanceId: string };

export interface EventsRoutesOptions {
  readonly sinks: Pick<Sinks, 'webhook' | 'websocketHub' | 'metrics' | 'invalidate'>;
  /** The global API key → admin; an instance token → that instance; anything else → undefined. */
  readonly authenticate: (apikey: string) => Promise<EventsPrincipal | undefined>;
  /** Finds an instance by id or name (case-insensitive); undefined when there is none. */
  readonly resolveInstance: (idOrName: string) => Promise<{ id: string; name: string } | undefined>;
  /** Generates and stores a new webhook signing secret for the instance and returns it. */
  readonly rotateWebhookSecret: (instanceId: string) => Promise<string>;
  /** Serve /metrics without credentials (a scraper on a private network). Default false. */
  readonly publicMetrics?: boolean;
}

const first = (value: string | string[] | undefined): string | undefined =>
  (Array.isArray(value) ? value[0] : value)?.trim() || undefined;

/** The key from the `apikey` header, `Authorization: Bearer`, or (WebSocket only) `?apikey=` / `?token=`. */
function credentialOf(request: FastifyRequest, allowQuery: boolean): string | undefined {
  const header = first(request.headers['apikey']);
  if (header) return header;
  const authorization = first(request.headers['authorization']);
  if (authorization?.toLowerCase().startsWith('bearer ')) return authorization.slice(7).trim() || undefined;
  if (!allowQuery) return undefined;
  const query = request.query as Record<string, string | undefined>;
  return query['apikey']?.trim() || query['token']?.trim() || undefined;
}

const deliveryView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    instanceId: { type: 'string' },
    target: { type: 'string', enum: ['instance', 'global'] },
    url: { type: 'string' },
    eventId: { type: 'string' },
    eventName: { type: 'string' },
    position: { type: 'string' },
    storedAt: { type: 'string', format: 'date-time' },
    status: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
    attempts: { type: 'integer' },
    nextAttemptAt: { type: 'string', format: 'date-time' },
    lastAttemptAt: { type: ['string', 'null'], format: 'date-time' },
    lastStatusCode: { type: ['integer', 'null'] },
    lastError: { type: ['string', 'null'] },
    lastDurationMs: { type: ['integer', 'null'] },
    deliveredAt: { type: ['string', 'null'], format: 'date-time' },
    redeliveryOf: { type: ['string', 'null'] },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;

const errors = {
  400: errorResponseSchema,
  401: errorResponseSchema,
  403: errorResponseSchema,
  404: errorResponseSchema,
};
const instanceParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

/** Instance tokens never see where the operator's global webhook points, nor what receivers answered. */
function redactFor(principal: EventsPrincipal, delivery: DeliveryView): DeliveryView {
  return principal.role === 'admin'
    ? delivery
    : {
        ...delivery,
        url: delivery.target === 'global' ? '' : delivery.url,
        lastError: deliveryErrorForTenant(delivery.lastError),
      };
}

type Jsonified<T> = {
  [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K];
};

function toJson(delivery: DeliveryView): Jsonified<DeliveryView> {
  const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);
  return {
    ...delivery,
    storedAt: delivery.storedAt.toISOString(),
    nextAttemptAt: delivery.nextAttemptAt.toISOString(),
    lastAttemptAt: iso(delivery.lastAttemptAt),
    deliveredAt: iso(delivery.deliveredAt),
    createdAt: delivery.createdAt.toISOString(),
  };
}

export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const { sinks, authenticate, resolveInstance } = options;
  // Registered once at the root by the app: two registrations would each answer every upgrade.
  if (!app.hasDecorator('websocketServer')) {
    throw new Error('register @fastify/websocket once at the root before the events routes');
  }

  async function principalOf(request: FastifyRequest, allowQuery = false): Promise<EventsPrincipal> {
    const key = credentialOf(request, allowQuery);
    const principal = key ? await authenticate(key) : undefined;
    if (!principal) throw Errors.unauthorized();
    return principal;
  }

  /** The instance named in the path, if this principal may act on it. */
  async function instanceFor(
    request: FastifyRequest,
    reference: string,
  ): Promise<{
    principal: EventsPrincipal;
    instance: { id: string; name: string };
  }> {
    const principal = await principalOf(request);
    const instance = await resolveInstance(reference);
    if (principal.role === 'instance') {
      if (!instance || instance.id !== principal.instanceId)
        throw Errors.forbidden(`instance "${reference}"`);
    }
    if (!instance) throw Errors.instanceNotFound(reference);
    return { principal, instance };
  }

  interface WsQuery {
    events?: string;
    instance?: string;
    instanceName?: string;
    from?: string;
    apikey?: string;
    token?: string;
  }
  interface WsContext {
    principal: EventsPrincipal;
    events: SinkEventName[] | undefined;
    instance: string | undefined;
    from: Checkpoint | undefined;
  }
  const wsContexts = new WeakMap<FastifyRequest, WsContext>();

  app.get<{ Querystring: WsQuery }>(
    '/ws',
    {
      websocket: true,
      schema: {
        tags: ['events'],
        summary: 'Live events over WebSocket; ?from=<position> replays first (see docs/events.md)',
        querystring: {
          type: 'object',
          properties: {
            events: { type: 'string', description: 'comma-separated event names (default: all subscribed)' },
            instance: { type: 'string', description: 'admin key: one instance, by id or name' },
            instanceName: { type: 'string', description: 'alias of instance' },
            from: { type: 'string', description: 'resume after this position ("start" = the beginning)' },
            apikey: { type: 'string', description: 'for browsers, which cannot set headers on WebSocket' },
            token: { type: 'string', description: 'alias of apikey' },
          },
        },
      },
      preValidation: async (request) => {
        const principal = await principalOf(request, true);
        const q = request.query;
        let events: SinkEventName[] | undefined;
        if (q.events !== undefined && q.events.trim() !== '') {
          try {
            const names = normaliseEventNames(q.events);
            events = names.includes('ALL') ? undefined : (names as SinkEventName[]);
          } catch (error) {
            if (error instanceof UnknownEventNameError)
              throw Errors.validation(error.message, { unknown: error.unknown });
            throw error;
          }
        }
        let instance = (q.instance ?? q.instanceName)?.trim() || undefined;
        if (principal.role === 'instance') {
          if (instance) {
            const own = await resolveInstance(principal.instanceId);
            if (!own || (instance !== own.id && instance.toLowerCase() !== own.name.toLowerCase())) {
              throw Errors.forbidden(`instance "${instance}"`);
            }
          }
          instance = undefined; // the principal already limits it to its own
        } else if (instance && !(await resolveInstance(instance))) {
          throw Errors.instanceNotFound(instance);
        }
        let from: Checkpoint | undefined;
        if (q.from !== undefined) {
          from = (q.from === '' || q.from.toLowerCase() === 'start' ? START : q.from) as Checkpoint;
          if (!(await sinks.websocketHub.acceptsPosition(from))) {
            throw Errors.validation(
              `from: "${q.from}" is not a position; use the "position" of an event you received`,
            );
          }
        }
        wsContexts.set(request, { principal, events, instance, from });
      },
    },
    (socket, request) => {
      const context = wsContexts.get(request);
      if (!context) {
        socket.close(1011, 'unauthenticated');
        return;
      }
      void sinks.websocketHub.attach(socket, {
        principal: context.principal,
        ...(context.events ? { events: context.events } : {}),
        ...(context.instance ? { instance: context.instance } : {}),
        ...(context.from !== undefined ? { from: context.from } : {}),
      });
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['events'],
        summary: 'Prometheus metrics (global API key, as `apikey` or `Authorization: Bearer`)',
        response: { 200: { type: 'string' }, 401: errorResponseSchema, 403: errorResponseSchema },
      },
    },
    async (request, reply) => {
      if (!options.publicMetrics) {
        const principal = await principalOf(request);
        if (principal.role !== 'admin') throw Errors.adminOnly();
      }
      const body = await sinks.metrics.render();
      return reply.header('content-type', sinks.metrics.contentType).send(body);
    },
  );

  app.get<{
    Params: { id: string };
    Querystring: {
      status?: DeliveryStatus;
      eventId?: string;
      target?: DeliveryTarget;
      before?: string;
      limit?: number;
    };
  }>(
    '/instance/:id/webhook/deliveries',
    {
      schema: {
        tags: ['events'],
        summary: 'The webhook delivery log of an instance, newest first (page with ?before=<next>)',
        params: instanceParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
            eventId: { type: 'string', maxLength: 128 },
            target: { type: 'string', enum: ['instance', 'global'] },
            before: { type: 'string', pattern: '^\\d{1,18}$' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              deliveries: { type: 'array', items: deliveryView },
              next: { type: ['string', 'null'] },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const { principal, instance } = await instanceFor(request, request.params.id);
      const q = request.query;
      const limit = q.limit ?? 50;
      const target = principal.role === 'admin' ? q.target : 'instance';
      const deliveries = await sinks.webhook.deliveries(instance.id, {
        ...(q.status ? { status: q.status } : {}),
        ...(q.eventId ? { eventId: q.eventId } : {}),
        ...(target ? { target } : {}),
        ...(q.before ? { before: q.before } : {}),
        limit,
      });
      return {
        deliveries: deliveries.map((d) => toJson(redactFor(principal, d))),
        next: deliveries.length === limit ? (deliveries.at(-1)?.id ?? null) : null,
      };
    },
  );

  app.post<{ Params: { id: string; deliveryId: string } }>(
    '/instance/:id/webhook/deliveries/:deliveryId/redeliver',
    {
      schema: {
        tags: ['events'],
        summary: 'Send a delivery again (queued behind the pending ones, to the current webhook URL)',
        params: {
          type: 'object',
          required: ['id', 'deliveryId'],
          properties: {
            id: { type: 'string', minLength: 1, maxLength: 128 },
            deliveryId: { type: 'string', pattern: '^\\d{1,18}$' },
          },
        },
        response: { 202: { type: 'object', properties: { delivery: deliveryView } }, ...errors },
      },
    },
    async (request, reply) => {
      const { principal, instance } = await instanceFor(request, request.params.id);
      const { deliveryId } = request.params;
      const existing = await sinks.webhook.delivery(instance.id, deliveryId);
      // The global webhook is the operator's: only the admin key may resend to it.
      if (existing?.target === 'global' && principal.role !== 'admin') throw Errors.adminOnly();
      const delivery = existing ? await sinks.webhook.redeliver(instance.id, deliveryId) : undefined;
      if (!delivery) {
        throw new ZapwireError(
          'ZW_ERR_DELIVERY_NOT_FOUND',
          404,
          `delivery ${deliveryId} not found for this instance: list them with GET /instance/${request.params.id}/webhook/deliveries`,
        );
      }
      return reply.status(202).send({ delivery: toJson(redactFor(principal, delivery)) });
    },
  );

  app.post<{ Params: { id: string } }>(
    '/instance/:id/webhook/secret/rotate',
    {
      schema: {
        tags: ['events'],
        summary:
          'Replace the webhook signing secret; the new one is returned once and signs every later attempt',
        params: instanceParams,
        response: {
          200: { type: 'object', properties: { webhookSecret: { type: 'string' } } },
          ...errors,
        },
      },
    },
    async (request) => {
      const { instance } = await instanceFor(request, request.params.id);
      const webhookSecret = await options.rotateWebhookSecret(instance.id);
      sinks.invalidate(instance.id);
      return { webhookSecret };
    },
  );
};
