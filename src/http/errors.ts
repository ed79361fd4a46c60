import type { FastifyError, FastifyInstance } from 'fastify';
import { isZapwireError } from '../domain/errors.ts';

export interface ErrorBody {
  error: { code: string; message: string; details?: Readonly<Record<string, unknown>> };
}

/** What an error answers with. A profile at the edge may render the same decision in its own shape. */
export interface ErrorReply {
  readonly statusCode: number;
  readonly body: ErrorBody;
  /** Seconds, for 429 and 503. */
  readonly retryAfter?: number;
  /** true for an unexpected failure: log it. */
  readonly unexpected: boolean;
}

/** Maps every error to a status and `{ error: { code, message } }`; only unexpected failures are 500s. */
export function errorReplyOf(error: FastifyError): ErrorReply {
  if (isZapwireError(error)) {
    const body: ErrorBody = { error: { code: error.code, message: error.message } };
    if (error.details) body.error.details = error.details;
    return {
      statusCode: error.statusCode,
      body,
      unexpected: false,
      ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
    };
  }
  if (error.validation) {
    const message = error.validation
      .map((v) => {
        const where = v.instancePath
          ? v.instancePath.slice(1).replaceAll('/', '.')
          : (error.validationContext ?? 'request');
        if (v.keyword === 'additionalProperties') {
          return `${where}: unknown field "${String(v.params['additionalProperty'])}"`;
        }
        return `${where} ${v.message ?? 'is invalid'}`;
      })
      .join('; ');
    return { statusCode: 400, body: { error: { code: 'ZW_ERR_VALIDATION', message } }, unexpected: false };
  }
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
  if (status < 500) {
    const code = error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'ZW_ERR_BODY_TOO_LARGE' : 'ZW_ERR_BAD_REQUEST';
    const message =
      error.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 'request body too large: the limit is 1 MiB'
        : error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
          ? 'unsupported content type: send JSON with "Content-Type: application/json"'
          : error.message;
    return { statusCode: status, body: { error: { code, message } }, unexpected: false };
  }
  return {
    statusCode: 500,
    body: { error: { code: 'ZW_ERR_INTERNAL', message: 'internal error; see the server log' } },
    unexpected: true,
  };
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler<FastifyError>((error, request, reply) => {
    const answer = errorReplyOf(error);
    if (answer.unexpected) request.log.error({ err: error }, 'unhandled error');
    if (answer.retryAfter !== undefined) void reply.header('Retry-After', String(answer.retryAfter));
    return reply.status(answer.statusCode).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      error: {
        code: 'ZW_ERR_ROUTE_NOT_FOUND',
        message: `no route ${request.method} ${request.url}; see /docs`,
      },
    } satisfies ErrorBody),
  );
}

export const errorResponseSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;
