import type { FastifyError, FastifyInstance } from 'fastify';
import { isZapwireError } from '../domain/errors.ts';

interface ErrorBody {
  error: { code: string; message: string; details?: Readonly<Record<string, unknown>> };
}

/** Maps every error to `{ error: { code, message } }`; only unexpected failures become 500s. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler<FastifyError>((error, request, reply) => {
    if (isZapwireError(error)) {
      if (error.retryAfter !== undefined) void reply.header('Retry-After', String(error.retryAfter));
      const body: ErrorBody = { error: { code: error.code, message: error.message } };
      if (error.details) body.error.details = error.details;
      return reply.status(error.statusCode).send(body);
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
      return reply.status(400).send({ error: { code: 'ZW_ERR_VALIDATION', message } } satisfies ErrorBody);
    }
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status < 500) {
      const code =
        error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'ZW_ERR_BODY_TOO_LARGE' : 'ZW_ERR_BAD_REQUEST';
      const message =
        error.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? 'request body too large: the limit is 1 MiB'
          : error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? 'unsupported content type: send JSON with "Content-Type: application/json"'
            : error.message;
      return reply.status(status).send({ error: { code, message } } satisfies ErrorBody);
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.status(500).send({
      error: { code: 'ZW_ERR_INTERNAL', message: 'internal error; see the server log' },
    } satisfies ErrorBody);
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
