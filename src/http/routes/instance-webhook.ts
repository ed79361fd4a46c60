/**
 * /instance/:id/webhook/*: an instance's webhook queues (state, how far behind, why), its dead letters and
 * their redelivery, rewinds (replays of a range of the log), and signing-secret rotation (docs/events.md).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import type { Principal } from '../../domain/principal.ts';
import type { DeadLetter } from '../../store/port.ts';
import type { Sinks } from '../../sinks/index.ts';
import type { ReplayView, WebhookQueueView } from '../../sinks/webhook/index.ts';
import { deliveryErrorForTenant } from '../../sinks/webhook/tenant-view.ts';
import { requirePrincipal } from '../auth.ts';
import { errorResponses, idParam, type IdParam } from '../schemas.ts';

export interface InstanceWebhookRoutesOptions {
  readonly sinks: Pick<Sinks, 'webhook' | 'invalidate'>;
  /** Generates and stores a new webhook signing secret for the instance and returns it. */
  readonly rotateWebhookSecret: (instanceId: string) => Promise<string>;
}

const nullableTime = { type: ['string', 'null'], format: 'date-time' } as const;

const queueView = {
  type: 'object',
  properties: {
    target: { type: 'string', enum: ['instance', 'global'] },
    url: { type: ['string', 'null'] },
    state: { type: 'string', enum: ['delivering', 'paused', 'refusing'] },
    since: nullableTime,
    reason: { type: ['string', 'null'] },
    mode: { type: 'string', enum: ['live', 'catching-up'] },
    behind: { type: 'integer' },
    behindExact: { type: 'boolean' },
    oldestUndeliveredAt: nullableTime,
    oldestUndeliveredAgeSeconds: { type: ['number', 'null'] },
    lastError: { type: ['string', 'null'] },
    lastStatusCode: { type: ['integer', 'null'] },
    lastAttemptAt: nullableTime,
    lastDeliveredAt: nullableTime,
    nextProbeAt: nullableTime,
    position: { type: 'string' },
  },
} as const;

const replayView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    state: { type: 'string', enum: ['running', 'done', 'cancelled'] },
    after: { type: 'string' },
    through: { type: 'string' },
    fromTime: nullableTime,
    toTime: nullableTime,
    eventId: { type: ['string', 'null'] },
    cursor: { type: 'string' },
    sent: { type: 'integer' },
    lastError: { type: ['string', 'null'] },
    requestedBy: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    finishedAt: nullableTime,
  },
} as const;

const deadLetterView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    target: { type: 'string', enum: ['instance', 'global'] },
    url: { type: 'string' },
    eventId: { type: 'string' },
    eventName: { type: ['string', 'null'] },
    eventType: { type: 'string' },
    position: { type: 'string' },
    reason: { type: ['string', 'null'] },
    error: { type: 'string' },
    statusCode: { type: ['integer', 'null'] },
    storedAt: nullableTime,
    failedAt: { type: 'string', format: 'date-time' },
  },
} as const;

/** The compatibility view of GET /instance/:id/webhook/deliveries: dead letters as dead deliveries. */
const deliveryView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    instanceId: { type: 'string' },
    target: { type: 'string', enum: ['instance', 'global'] },
    url: { type: 'string' },
    eventId: { type: 'string' },
    eventName: { type: ['string', 'null'] },
    position: { type: 'string' },
    storedAt: nullableTime,
    status: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
    attempts: { type: 'integer' },
    lastAttemptAt: nullableTime,
    lastStatusCode: { type: ['integer', 'null'] },
    lastError: { type: ['string', 'null'] },
  },
} as const;

const pageQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    before: { type: 'string', pattern: '^\\d{1,18}$' },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  },
} as const;

const deliveriesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
    target: { type: 'string', enum: ['instance', 'global'] },
    before: { type: 'string', pattern: '^\\d{1,18}$' },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  },
} as const;

const deadLetterParams = {
  type: 'object',
  required: ['id', 'deadLetterId'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    deadLetterId: { type: 'string', pattern: '^\\d{1,18}$' },
  },
} as const;

const deliveryParams = {
  type: 'object',
  required: ['id', 'deliveryId'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    deliveryId: { type: 'string', pattern: '^\\d{1,18}$' },
  },
} as const;

const replayParams = {
  type: 'object',
  required: ['id', 'replayId'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    replayId: { type: 'string', pattern: '^\\d{1,18}$' },
  },
} as const;

const replayBody = {
  type: 'object',
  additionalProperties: false,
  required: ['from'],
  properties: {
    from: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description: 'A log position (an envelope\'s "position"; exclusive), an ISO 8601 time, or "start"',
    },
    to: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description: 'A log position or ISO 8601 time (inclusive); default: the newest event now',
    },
  },
} as const;

const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

/** Instance tokens never see where the operator's global webhook points, nor what receivers answered. */
function queueJson(principal: Principal, queue: WebhookQueueView, now: number): Record<string, unknown> {
  const tenant = principal.role !== 'admin';
  const hideUrl = tenant && queue.target === 'global';
  const lastError = tenant ? deliveryErrorForTenant(queue.lastError) : queue.lastError;
  return {
    ...queue,
    url: hideUrl ? null : queue.url,
    since: iso(queue.since),
    reason:
      tenant && queue.reason && queue.lastError
        ? queue.reason.replace(queue.lastError, lastError ?? '')
        : queue.reason,
    oldestUndeliveredAt: iso(queue.oldestUndeliveredAt),
    oldestUndeliveredAgeSeconds: queue.oldestUndeliveredAt
      ? Math.max(0, Math.round((now - queue.oldestUndeliveredAt.getTime()) / 1000))
      : null,
    lastError,
    lastAttemptAt: iso(queue.lastAttemptAt),
    lastDeliveredAt: iso(queue.lastDeliveredAt),
    nextProbeAt: iso(queue.nextProbeAt),
  };
}

function replayJson(replay: ReplayView): Record<string, unknown> {
  return {
    ...replay,
    fromTime: iso(replay.fromTime),
    toTime: iso(replay.toTime),
    eventId: replay.eventId ?? null,
    lastError: replay.lastError ?? null,
    createdAt: replay.createdAt.toISOString(),
    finishedAt: iso(replay.finishedAt),
  };
}

function deadLetterJson(principal: Principal, dead: DeadLetter): Record<string, unknown> {
  const detail = dead.detail;
  const target = detail['target'] === 'global' ? 'global' : 'instance';
  const tenant = principal.role !== 'admin';
  const text = (key: string): string | null =>
    typeof detail[key] === 'string' ? (detail[key] as string) : null;
  return {
    id: dead.id,
    target,
    url: tenant && target === 'global' ? '' : (text('url') ?? ''),
    eventId: dead.eventId,
    eventName: text('eventName'),
    eventType: dead.eventType,
    position: dead.position,
    reason: text('reason'),
    error: tenant ? (deliveryErrorForTenant(dead.error) ?? '') : dead.error,
    statusCode: typeof detail['statusCode'] === 'number' ? detail['statusCode'] : null,
    storedAt: text('storedAt'),
    failedAt: dead.failedAt.toISOString(),
  };
}

export const instanceWebhookRoutes: FastifyPluginAsync<InstanceWebhookRoutesOptions> = async (
  app,
  options,
) => {
  const { sinks } = options;
  const requestedBy = (principal: Principal): string =>
    principal.role === 'admin' ? 'admin' : `instance:${principal.instanceId}`;

  app.get<{ Params: IdParam }>(
    '/instance/:id/webhook',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary:
          "The instance's webhook queues: delivering, paused (receiver down since …) or refusing; events behind, age of the oldest undelivered one, last error; dead letters and recent replays",
        params: idParam,
        response: {
          200: {
            type: 'object',
            properties: {
              queues: { type: 'array', items: queueView },
              deadLetters: { type: 'integer' },
              replays: { type: 'array', items: replayView },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const instance = request.instance;
      const status = await sinks.webhook.status(instance.id);
      const now = Date.now();
      return {
        queues: status.queues.map((q) => queueJson(principal, q, now)),
        deadLetters: status.deadLetters,
        replays: status.replays.map(replayJson),
      };
    },
  );

  app.get<{ Params: IdParam; Querystring: FromSchema<typeof pageQuery> }>(
    '/instance/:id/webhook/dead-letters',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary:
          'Events the webhook gave up on, newest first: refused by the receiver (a 4xx other than 408/429) or older than WEBHOOK_MAX_AGE_HOURS (page with ?before=<next>)',
        params: idParam,
        querystring: pageQuery,
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
      const principal = requirePrincipal(request);
      const instance = request.instance;
      const limit = request.query.limit ?? 50;
      const letters = await sinks.webhook.deadLetters(instance.id, {
        limit,
        ...(request.query.before ? { before: request.query.before } : {}),
      });
      return {
        deadLetters: letters.map((d) => deadLetterJson(principal, d)),
        next: letters.length === limit ? (letters.at(-1)?.id ?? null) : null,
      };
    },
  );

  const redeliver = async (
    principal: Principal,
    instanceId: string,
    reference: string,
    deadLetterId: string,
  ): Promise<ReplayView> => {
    const letter = await sinks.webhook.deadLetter(instanceId, deadLetterId);
    // The global webhook is the operator's: only the admin key may resend to it.
    if (letter?.detail['target'] === 'global') {
      if (principal.role !== 'admin') throw Errors.adminOnly();
      throw Errors.validation(
        'a dead letter of the global webhook is sent again with POST /admin/dead-letters/:id/retry',
      );
    }
    const replay = letter
      ? await sinks.webhook.redeliver(instanceId, deadLetterId, requestedBy(principal))
      : undefined;
    if (!replay) throw Errors.deliveryNotFound(deadLetterId, reference);
    return replay;
  };

  app.post<{ Params: FromSchema<typeof deadLetterParams> }>(
    '/instance/:id/webhook/dead-letters/:deadLetterId/redeliver',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'any' },
      schema: {
        tags: ['events'],
        summary:
          'Send a dead-lettered event again, to the current webhook URL (a one-event replay); WEBHOOK_REDELIVER_PER_MINUTE per instance (429 beyond)',
        params: deadLetterParams,
        response: { 202: { type: 'object', properties: { replay: replayView } }, ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      const instance = request.instance;
      const replay = await redeliver(principal, instance.id, request.params.id, request.params.deadLetterId);
      return reply.status(202).send({ replay: replayJson(replay) });
    },
  );

  app.post<{ Params: IdParam; Body: FromSchema<typeof replayBody> }>(
    '/instance/:id/webhook/replay',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'any' },
      schema: {
        tags: ['events'],
        summary:
          "Send a range of the instance's events to its current webhook again, with their event ids (receivers deduplicate by them); WEBHOOK_REDELIVER_PER_MINUTE per instance, 2 running at once",
        params: idParam,
        body: replayBody,
        response: { 202: { type: 'object', properties: { replay: replayView } }, ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      const instance = request.instance;
      const replay = await sinks.webhook.replay(
        instance.id,
        { from: request.body.from, ...(request.body.to !== undefined ? { to: request.body.to } : {}) },
        requestedBy(principal),
      );
      return reply.status(202).send({ replay: replayJson(replay) });
    },
  );

  app.get<{ Params: IdParam }>(
    '/instance/:id/webhook/replays',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary: "The instance's webhook replays, newest first",
        params: idParam,
        response: {
          200: { type: 'object', properties: { replays: { type: 'array', items: replayView } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const instance = request.instance;
      return { replays: (await sinks.webhook.replays(instance.id)).map(replayJson) };
    },
  );

  app.delete<{ Params: FromSchema<typeof replayParams> }>(
    '/instance/:id/webhook/replays/:replayId',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'any' },
      schema: {
        tags: ['events'],
        summary: 'Stop a running replay (what it sent stays sent)',
        params: replayParams,
        response: { 200: { type: 'object', properties: { replay: replayView } }, ...errorResponses },
      },
    },
    async (request) => {
      const instance = request.instance;
      const replay = await sinks.webhook.cancelReplay(instance.id, request.params.replayId);
      if (!replay) throw Errors.deliveryNotFound(request.params.replayId, request.params.id);
      return { replay: replayJson(replay) };
    },
  );

  // Earlier versions kept a delivery log of rows; its routes stay, over the dead letters.
  app.get<{ Params: IdParam; Querystring: FromSchema<typeof deliveriesQuery> }>(
    '/instance/:id/webhook/deliveries',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['events'],
        summary:
          'Compatibility view of the dead letters as dead deliveries (GET /instance/:id/webhook/dead-letters is the full view); delivered events leave no rows',
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
      const instance = request.instance;
      const q = request.query;
      const limit = q.limit ?? 50;
      if (q.status !== undefined && q.status !== 'dead') return { deliveries: [], next: null };
      const letters = await sinks.webhook.deadLetters(instance.id, {
        limit,
        ...(q.before ? { before: q.before } : {}),
      });
      const deliveries = letters
        .map((d) => deadLetterJson(principal, d))
        .filter((d) => q.target === undefined || d['target'] === q.target)
        .map((d) => ({
          id: d['id'],
          instanceId: instance.id,
          target: d['target'],
          url: d['url'],
          eventId: d['eventId'],
          eventName: d['eventName'],
          position: d['position'],
          storedAt: d['storedAt'],
          status: 'dead',
          attempts: 1,
          lastAttemptAt: d['failedAt'],
          lastStatusCode: d['statusCode'],
          lastError: d['error'],
        }));
      return { deliveries, next: letters.length === limit ? (letters.at(-1)?.id ?? null) : null };
    },
  );

  app.post<{ Params: FromSchema<typeof deliveryParams> }>(
    '/instance/:id/webhook/deliveries/:deliveryId/redeliver',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'any' },
      schema: {
        tags: ['events'],
        summary: 'Compatibility name of POST /instance/:id/webhook/dead-letters/:deadLetterId/redeliver',
        params: deliveryParams,
        response: { 202: { type: 'object', properties: { replay: replayView } }, ...errorResponses },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      const instance = request.instance;
      const replay = await redeliver(principal, instance.id, request.params.id, request.params.deliveryId);
      return reply.status(202).send({ replay: replayJson(replay) });
    },
  );

  app.post<{ Params: IdParam }>(
    '/instance/:id/webhook/secret/rotate',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'any' },
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
      const { id } = request.instance;
      const webhookSecret = await options.rotateWebhookSecret(id);
      sinks.invalidate(id);
      return { webhookSecret };
    },
  );
};
