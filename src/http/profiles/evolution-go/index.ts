/**
 * The `API_COMPAT=evolution-go` profile: Evolution GO's wire format, so its manager, n8n nodes, SDKs and
 * flows keep working after a server swap. A Fastify plugin of its own: its routes (routes.ts: the
 * instance lifecycle, advanced settings and /send/text in Evolution GO's shapes), its request readers
 * (requests.ts), answer shapes (wire.ts), errors (errors.ts) and the sinks' payload (sink-payload.ts),
 * registered instead of zapwire's own instance, settings and send routes. The routes every profile shares
 * (webhook queues, history, /ws, admin, debug, manager) answer their errors in this profile's shape.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { installCors } from '../cors.ts';
import type { EdgeProfile } from '../profile.ts';
import { evolutionErrorOf } from './errors.ts';
import { EvolutionError } from './requests.ts';
import { evolutionGoRoutes, type EvolutionGoRoutesOptions } from './routes.ts';

export type { TokenVault } from './routes.ts';

export interface EvolutionGoOptions extends EvolutionGoRoutesOptions {
  /** CORS origins; `['*']` unless configured. */
  readonly corsOrigins: readonly string[];
}

/** Evolution GO's CORS middleware allows exactly these (its manager sends Cache-Control: no-cache). */
const EVOLUTION_GO_CORS_HEADERS = [
  'Origin',
  'Content-Type',
  'Content-Length',
  'Accept-Encoding',
  'X-CSRF-Token',
  'Authorization',
  'Accept',
  'Cache-Control',
  'X-Requested-With',
  'apikey',
  'ApiKey',
];

export function evolutionGoProfile(options: EvolutionGoOptions): EdgeProfile {
  return {
    name: 'evolution-go',
    install(app: FastifyInstance) {
      installCors(app, options.corsOrigins, EVOLUTION_GO_CORS_HEADERS);
      installJsonLikeGo(app);
      app.setErrorHandler<FastifyError>((error, request, reply) => {
        const answer = evolutionErrorOf(error);
        if (answer.unexpected) request.log.error({ err: error }, 'unhandled error');
        if (answer.retryAfter !== undefined) void reply.header('Retry-After', String(answer.retryAfter));
        // Serialised here: zapwire's shared routes keep their response schemas, whose error shape
        // `{error: {code, message}}` this body is not.
        return reply
          .status(answer.statusCode)
          .type('application/json; charset=utf-8')
          .send(JSON.stringify(answer.body));
      });
      app.setNotFoundHandler((_request, reply) => reply.status(404).send({ error: '404 page not found' }));
    },
    async routes(app) {
      await app.register(evolutionGoRoutes, options);
    },
    clientErrorBody: (_code, message) => ({ error: message }),
  };
}

/**
 * Go's `ShouldBindJSON` reads the body as JSON whatever the Content-Type (curl's `-d` sends a form type),
 * and an empty body is only an error where a handler needs one.
 */
function installJsonLikeGo(app: FastifyInstance): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, text, done) => {
    const source = String(text);
    if (source.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(source) as unknown);
    } catch (error) {
      const message = error instanceof Error ? error.message : '';
      done(
        new EvolutionError(
          400,
          /end of (JSON )?input|Unterminated|Expected/i.test(message) && !/position 0/.test(message)
            ? 'unexpected EOF'
            : `invalid character '${source.trim()[0] ?? ''}' looking for beginning of value`,
        ),
        undefined,
      );
    }
  });
}
