/**
 * /instance/:id/webhook/*: an instance's webhook delivery log, redelivery, and signing-secret rotation
 * (docs/events.md).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import type { Principal } from '../../domain/principal.ts';
import type { Sinks } from '../../sinks/index.ts';
import type { DeliveryView } from '../../sinks/webhook/delivery-log.ts';
import { deliveryErrorForTenant } from '../../sinks/webhook/tenant-view.ts';
import { requirePrincipal } from '../auth.ts';
import { errorResponses, idParam, type IdParam } from '../schemas.ts';

export interface InstanceWebhookRoutesOptions {
  readonly sinks: Pick<Sinks, 'webhook' | 'invalidate'>;
  /** Generates and stores a new webhook signing secret for the instance and returns it. */
  readonly rotateWebhookSecret: (instanceId: string) => Promise<string>;
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

const deliveriesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
    eventId: { type: 'string', maxLength: 128 },
    target: { type: 'string', enum: ['instance', 'global'] },
    before: { type: 'string', pattern: '^\\d{1,18}$' },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  },
} as const;

const redeliverParams = {
  type: 'object',
  required: ['id', 'deliveryId'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    deliveryId: { type: 'string', pattern: '^\\d{1,18}$' },
  },
} as const;

/** Instance tokens never see where the operator's global webhook points, nor what receivers answered. */
function redactFor(principal: Principal, delivery: DeliveryView): DeliveryView {
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

export const instanceWebhookRoutes: FastifyPluginAsync<InstanceWebhookRoutesOptions> = async (
  app,
  options,
) => {
  const { sinks } = options;

  app.get<{ Params: IdParam; Querystring: FromSchema<typeof deliveriesQuery> }>(
    '/instance/:id/webhook/deliveries',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary:
          'The webhook delivery log of an instance, newest first: deliveries retried, parked behind a slow receiver, dead or redelivered (page with ?before=<next>)',
        params: idParam,
        querystring: deliveriesQuery,
        response: {
          200: {
            type: 'object',
            properties: {
              deliveries: { type: 'array', items: deliveryView },
              next: { type: ['string', 'null'] },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const instance = await request.instance();
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

  app.post<{ Params: FromSchema<typeof redeliverParams> }>(
    '/instance/:id/webhook/deliveries/:deliveryId/redeliver',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary:
          'Send a delivery again (queued behind the pending ones, to the current webhook URL); one pending copy per delivery, WEBHOOK_REDELIVER_PER_MINUTE per instance (429 beyond)',
        params: redeliverParams,
        response: { 202: { type: 'object', properties: { delivery: deliveryView } }, ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      const instance = await request.instance();
      const { deliveryId } = request.params;
      const existing = await sinks.webhook.delivery(instance.id, deliveryId);
      // The global webhook is the operator's: only the admin key may resend to it.
      if (existing?.target === 'global' && principal.role !== 'admin') throw Errors.adminOnly();
      const delivery = existing ? await sinks.webhook.redeliver(instance.id, deliveryId) : undefined;
      if (!delivery) {
        throw Errors.deliveryNotFound(deliveryId, request.params.id);
      }
      return reply.status(202).send({ delivery: toJson(redactFor(principal, delivery)) });
    },
  );

  app.post<{ Params: IdParam }>(
    '/instance/:id/webhook/secret/rotate',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary:
          'Replace the webhook signing secret; the new one is returned once and signs every later attempt',
        params: idParam,
        response: {
          200: { type: 'object', properties: { webhookSecret: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { id } = await request.instance();
      const webhookSecret = await options.rotateWebhookSecret(id);
      sinks.invalidate(id);
      return { webhookSecret };
    },
  );
};
