/**
 * /send/*: messages out through the instance's outbox (src/runtime/outbox). A send is recorded first, then
 * the route waits for WhatsApp's answer: 200 once sent; 202 with the send's id when it has to wait (pacing,
 * a restriction's pause, no connection, `sendAt`, or no answer within SEND_WAIT_MS). An `Idempotency-Key`
 * header makes a repeat of the request answer with the first one's send.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import type { InstanceService, SendOutcome } from '../../runtime/service.ts';
import { errorResponseSchema } from '../errors.ts';
import { errorResponses } from '../schemas.ts';
import { sendViewSchema } from './sends.ts';

export interface SendRoutesOptions {
  readonly service: Pick<InstanceService, 'sendText'>;
}

/** The longest a send may be scheduled ahead. */
const MAX_SCHEDULE_AHEAD_MS = 366 * 86_400_000;

const textBody = {
  type: 'object',
  required: ['number', 'text'],
  properties: {
    instanceName: { type: 'string', maxLength: 128 },
    number: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description: 'phone number with country code (5511999999999) or a JID',
    },
    text: { type: 'string', minLength: 1, maxLength: 65536 },
    sendAt: {
      type: 'string',
      maxLength: 64,
      description:
        'ISO 8601 time (with a zone, e.g. 2026-12-24T18:00:00Z) before which the message is not sent; answered 202 with the send, cancel it with DELETE /instance/:id/sends/:sendId',
    },
  },
} as const;

const sentResponse = {
  type: 'object',
  properties: {
    id: { type: 'string', description: "WhatsApp's message id" },
    sendId: { type: 'string', description: 'the send, for GET /instance/:id/sends/:sendId' },
    status: { type: 'string' },
    timestamp: { type: 'string' },
    to: { type: 'string' },
  },
} as const;

/** A send WhatsApp refused: `details` says which send, the code and why (the shared error schema drops it). */
const sendFailedResponse = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        details: {
          type: 'object',
          properties: { sendId: { type: 'string' }, code: { type: 'string' }, reason: { type: 'string' } },
        },
      },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

const sendHeaders = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      description:
        'Any unique string (a UUID): a repeat of the request with the same key, within 48 hours, answers with the first request’s send instead of sending again',
    },
    prefer: { type: 'string', description: '"respond-async": answer 202 with the send at once' },
  },
} as const;

export const sendRoutes: FastifyPluginAsync<SendRoutesOptions> = async (app, { service }) => {
  app.post<{ Body: FromSchema<typeof textBody> }>(
    '/send/text',
    {
      config: { access: 'caller', instanceFrom: ['body.instanceName'], runsOn: 'owner' },
      schema: {
        tags: ['messages'],
        summary: 'Send a text message (instance token, or the admin key with instanceName)',
        headers: sendHeaders,
        body: textBody,
        response: {
          200: sentResponse,
          202: sendViewSchema,
          ...errorResponses,
          422: errorResponseSchema,
          502: sendFailedResponse,
        },
      },
    },
    async (request, reply) => {
      const { id } = request.instance;
      const sendAt = parseSendAt(request.body.sendAt);
      const outcome = await service.sendText(id, request.body.number, request.body.text, {
        ...sendOptionsOf(request),
        ...(sendAt ? { sendAt } : {}),
      });
      return answer(reply, outcome);
    },
  );
};

/** The headers every send route reads: Idempotency-Key, and Prefer: respond-async. */
export function sendOptionsOf(request: FastifyRequest): { idempotencyKey?: string; waitMs?: number } {
  const key = request.headers['idempotency-key'];
  const idempotencyKey = typeof key === 'string' ? key.trim() : undefined;
  if (idempotencyKey !== undefined && !/^[\x21-\x7e]{1,255}$/.test(idempotencyKey))
    throw Errors.validation(
      'Idempotency-Key: use 1 to 255 visible ASCII characters (a UUID is a good key), one key per message',
    );
  const prefer = request.headers['prefer'];
  const async = typeof prefer === 'string' && /(^|[\s,;])respond-async($|[\s,;])/i.test(prefer);
  return { ...(idempotencyKey ? { idempotencyKey } : {}), ...(async ? { waitMs: 0 } : {}) };
}

export function parseSendAt(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const at = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(at))
    throw Errors.validation(
      `sendAt "${value}" is not an ISO 8601 time with a zone: write it like 2026-12-24T18:00:00Z or 2026-12-24T15:00:00-03:00`,
    );
  if (at - Date.now() > MAX_SCHEDULE_AHEAD_MS)
    throw Errors.validation(
      `sendAt "${value}" is more than a year ahead: schedule sends at most a year ahead`,
    );
  return new Date(at);
}

function answer(reply: FastifyReply, outcome: SendOutcome): unknown {
  if (outcome.state === 'sent') return outcome.message;
  return reply.code(202).send(outcome.send);
}
