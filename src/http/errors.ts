import type { FastifyError, FastifyInstance } from 'fastify';
import { Errors, isZapwireError, type ZapwireError } from '../domain/errors.ts';
import { FencedWriteError, isStoreUnavailable } from '../store/errors.ts';

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

/** The HTTP status of each error code: the domain knows codes, the edge knows statuses. */
const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  ZW_ERR_VALIDATION: 400,
  ZW_ERR_INSTANCE_NAME_REQUIRED: 400,
  ZW_ERR_UNAUTHORIZED: 401,
  ZW_ERR_FORBIDDEN: 403,
  ZW_ERR_ADMIN_ONLY: 403,
  ZW_ERR_INSTANCE_NOT_FOUND: 404,
  ZW_ERR_QR_NOT_READY: 404,
  ZW_ERR_DELIVERY_NOT_FOUND: 404,
  ZW_ERR_DEAD_LETTER_NOT_FOUND: 404,
  ZW_ERR_PROJECTION_NOT_FOUND: 404,
  ZW_ERR_NOT_YET_CREATED: 404,
  ZW_ERR_NAME_TAKEN: 409,
  ZW_ERR_TOKEN_TAKEN: 409,
  ZW_ERR_NO_ACTIVE_SESSION: 409,
  ZW_ERR_CLIENT_DISCONNECTED: 409,
  ZW_ERR_ALREADY_CONNECTED: 409,
  ZW_ERR_INVALID_STATE: 409,
  ZW_ERR_CONCURRENT_UPDATE: 409,
  ZW_ERR_REBUILD_RUNNING: 409,
  ZW_ERR_RETRY_UNAVAILABLE: 409,
  ZW_ERR_SEND_NOT_FOUND: 404,
  ZW_ERR_SEND_NOT_CANCELLABLE: 409,
  ZW_ERR_IDEMPOTENCY_KEY_REUSED: 422,
  ZW_ERR_SEND_FAILED: 502,
  ZW_ERR_INSTANCE_DELETED: 410,
  ZW_ERR_UPGRADE_REQUIRED: 426,
  ZW_ERR_RATE_LIMITED: 429,
  ZW_ERR_UNAVAILABLE: 503,
};

/** The status a ZapwireError answers with; a code without one is a client error (400). */
export function statusOf(error: ZapwireError): number {
  return STATUS_OF_CODE[error.code] ?? 400;
}

/** Seconds a client is asked to wait while the database cannot be reached. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/**
 * Errors from below the domain that a client should see as a domain error, never as a 500: a write
 * refused because this node no longer holds the instance's lease (cluster mode: it moved to another
 * node; the next attempt reaches the new owner), and a database that cannot be reached (the request
 * was fine: retry once it is back).
 */
export function asDomainError(error: FastifyError): FastifyError | ZapwireError {
  if (error instanceof FencedWriteError)
    return Errors.unavailable(
      `this node does not own instance ${error.instanceId} any more (it moved to another node, or is moving): retry`,
      1,
    );
  if (isStoreUnavailable(error))
    return Errors.unavailable(
      'the database cannot be reached right now: retry in a moment (the operator sees why in the server log)',
      DATABASE_RETRY_AFTER_SECONDS,
    );
  return error;
}

/** Maps every error to a status and `{ error: { code, message } }`; only unexpected failures are 500s. */
export function errorReplyOf(raw: FastifyError): ErrorReply {
  const error = asDomainError(raw);
  if (isZapwireError(error)) {
    const body: ErrorBody = { error: { code: error.code, message: error.message } };
    if (error.details) body.error.details = error.details;
    return {
      statusCode: statusOf(error),
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
        // The path only: the query may hold a key (`?apikey=` on a mistyped WebSocket URL).
        message: `no route ${request.method} ${request.url.split('?')[0] ?? ''}; see /docs`,
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
