/**
 * The outbox of an instance (src/runtime/outbox): one send's state, cancelling a send still waiting, the
 * queue, and the pacing settings (applied at once, kept in the instance's log). Every route runs on the
 * instance's owner, reads included: the outbox lives in its memory. Shared by both profiles.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import { SEND_PACING_LIMITS, type SendPacing } from '../../domain/outbox.ts';
import type { SendCommands } from '../../runtime/outbox/send-commands.ts';
import { errorResponses, idParam, type IdParam } from '../schemas.ts';

export interface SendsRoutesOptions {
  readonly sends: Pick<SendCommands, 'send' | 'cancel' | 'status' | 'pacing' | 'changePacing'>;
}

export const sendViewSchema = {
  type: 'object',
  properties: {
    sendId: { type: 'string' },
    messageId: {
      type: 'string',
      description: 'the WhatsApp id the message goes out with (also when sent again)',
    },
    to: { type: 'string' },
    state: { type: 'string', enum: ['queued', 'scheduled', 'sending', 'sent', 'failed', 'cancelled'] },
    requestedAt: { type: 'string' },
    sendAt: { type: ['string', 'null'] },
    finishedAt: { type: ['string', 'null'] },
    sent: {
      type: 'object',
      properties: {
        timestamp: { type: 'string' },
        status: { type: 'string' },
        mentions: { type: 'array', items: { type: 'string' } },
      },
    },
    failure: { type: 'object', properties: { code: { type: 'string' }, reason: { type: 'string' } } },
    waitingFor: { type: 'string' },
  },
} as const;

const sendParams = {
  type: 'object',
  required: ['id', 'sendId'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128 },
    sendId: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const;

const pacingProperties = Object.fromEntries(
  Object.entries(SEND_PACING_LIMITS).map(([key, max]) => [key, { type: 'number', minimum: 0, maximum: max }]),
) as Record<keyof SendPacing, { type: 'number'; minimum: 0; maximum: number }>;

const pacingSchema = {
  type: 'object',
  properties: {
    messagesPerMinute: {
      type: 'number',
      minimum: 0,
      maximum: SEND_PACING_LIMITS.messagesPerMinute,
      description: 'at most this many messages a minute, evenly spaced; 0: no limit',
    },
    minGapPerRecipientMs: {
      type: 'number',
      minimum: 0,
      maximum: SEND_PACING_LIMITS.minGapPerRecipientMs,
      description: 'at least this long between two messages to the same recipient; 0: off',
    },
    jitterMs: {
      type: 'number',
      minimum: 0,
      maximum: SEND_PACING_LIMITS.jitterMs,
      description: 'up to this much extra wait, at random, before each paced send',
    },
    warmupDays: {
      type: 'number',
      minimum: 0,
      maximum: SEND_PACING_LIMITS.warmupDays,
      description:
        'a newly paired number sends messagesPerMinute × (days since pairing / warmupDays), at least a tenth of it, during its first warmupDays days; 0: off',
    },
    typingMsPerChar: {
      type: 'number',
      minimum: 0,
      maximum: SEND_PACING_LIMITS.typingMsPerChar,
      description: 'show "typing…" before each text, this long per character; 0: off',
    },
    typingMaxMs: {
      type: 'number',
      minimum: 0,
      maximum: SEND_PACING_LIMITS.typingMaxMs,
      description: 'the longest "typing…" for one text',
    },
  },
} as const;

const outboxStatusSchema = {
  type: 'object',
  properties: {
    instanceId: { type: 'string' },
    queued: { type: 'integer' },
    scheduled: { type: 'integer' },
    sending: { type: 'integer' },
    oldestQueuedAt: { type: ['string', 'null'] },
    oldestWaitMs: { type: 'number' },
    paused: {
      anyOf: [
        {
          type: 'object',
          properties: { code: { type: 'string' }, reason: { type: 'string' }, until: { type: 'string' } },
        },
        { type: 'null' },
      ],
    },
    connected: { type: 'boolean' },
    pacing: { type: 'object', properties: pacingProperties },
  },
} as const;

export const sendsRoutes: FastifyPluginAsync<SendsRoutesOptions> = async (app, { sends }) => {
  app.get<{ Params: FromSchema<typeof sendParams> }>(
    '/instance/:id/sends/:sendId',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['messages'],
        summary:
          "A send's state: queued, scheduled, sending, sent (with WhatsApp's answer), failed (why), cancelled",
        params: sendParams,
        response: { 200: sendViewSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      return sends.send(id, request.params.sendId);
    },
  );

  app.delete<{ Params: FromSchema<typeof sendParams> }>(
    '/instance/:id/sends/:sendId',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['messages'],
        summary: 'Cancel a send that is still queued or scheduled (409 once it is on its way or done)',
        params: sendParams,
        response: { 200: sendViewSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      return sends.cancel(id, request.params.sendId);
    },
  );

  app.get<{ Params: IdParam }>(
    '/instance/:id/outbox',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['messages'],
        summary:
          "The instance's outbox: sends waiting, how long the oldest has waited, a restriction's pause",
        params: idParam,
        response: { 200: outboxStatusSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      return sends.status(id);
    },
  );

  app.get<{ Params: IdParam }>(
    '/instance/:id/send-settings',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['settings'],
        summary: "The instance's pacing of what it sends (all 0: no pacing, the default)",
        params: idParam,
        response: { 200: pacingSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      return sends.pacing(id);
    },
  );

  app.route<{ Params: IdParam; Body: FromSchema<typeof pacingSchema> }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/send-settings',
    config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
    schema: {
      tags: ['settings'],
      summary: 'Change the pacing of what the instance sends; applies to the next send, no reconnect',
      params: idParam,
      body: pacingSchema,
      response: { 200: pacingSchema, ...errorResponses },
    },
    handler: async (request) => {
      const { id } = request.instance;
      const patch = request.body ?? {};
      if (Object.keys(patch).length === 0)
        throw Errors.validation(
          `send at least one setting: ${Object.keys(SEND_PACING_LIMITS).join(', ')} (each a number, 0 turns it off)`,
        );
      return sends.changePacing(id, patch);
    },
  });
};
