import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Logger } from 'pino';
import { installQueryCoercion } from './query-coercion.ts';
import { installKnownKeysOnly } from './known-keys.ts';
import { healthRoutes, type ClusterHealth } from './routes/health.ts';
import type { EventLog } from '../store/port.ts';
import { installAuth, type AuthOptions } from './auth.ts';
import { installForwarding, type ForwardingOptions } from '../cluster/forwarding.ts';
import { defaultProfile } from './profiles/default.ts';
import type { EdgeProfile } from './profiles/profile.ts';

export const BODY_LIMIT_BYTES = 1024 * 1024;

export interface AppOptions {
  readonly logger: Logger;
  readonly store: EventLog;
  /** Who is calling and which instance a reference names (src/http/auth.ts). */
  readonly auth: AuthOptions;
  readonly startedAt?: Date;
  /** Shown by /health (see healthRoutes). */
  readonly alerts?: () => Promise<readonly string[]>;
  /** Shown by /health: this node in the cluster. */
  readonly cluster?: () => ClusterHealth;
  /** TRUST_PROXY: true (any proxy) or the proxies' addresses/CIDRs, comma-separated. */
  readonly trustProxy?: boolean | string | undefined;
  /** The wire format (API_COMPAT); zapwire's own by default. */
  readonly profile?: EdgeProfile;
  /** Cluster mode: requests for instances other nodes own go to them (src/cluster/forwarding.ts). */
  readonly forwarding?: ForwardingOptions;
  /** Registers route groups after the built-in ones (each `app.register` call is encapsulated). */
  readonly routes?: (app: FastifyInstance) => Promise<void>;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    return503OnClosing: true,
    // TRUST_PROXY: read X-Forwarded-Proto/-For from these proxies (Secure cookies behind a TLS proxy).
    ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy } : {}),
    // Fastify's own request log prints the raw URL; ours redacts secrets a browser may put in the query.
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: redactQuery(request.url),
        statusCode: reply.statusCode,
        responseTimeMs: Math.round(reply.elapsedTime),
      },
      'request completed',
    );
  });
  // Before auth: a forwarded request's signature is checked before auth takes its principal.
  if (options.forwarding) installForwarding(app, options.forwarding);
  installAuth(app, options.auth);
  installQueryCoercion(app);
  installKnownKeysOnly(app);
  await (options.profile ?? defaultProfile()).install(app);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'zapwire',
        description:
          'Self-hosted WhatsApp gateway. Authenticate with the header `apikey`: the global API key (admin, every instance) or an instance token (that instance only).',
        version: '0.1.0',
      },
      components: { securitySchemes: { apikey: { type: 'apiKey', in: 'header', name: 'apikey' } } },
      security: [{ apikey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(healthRoutes, {
    store: options.store,
    startedAt: options.startedAt ?? new Date(),
    ...(options.alerts ? { alerts: options.alerts } : {}),
    ...(options.cluster ? { cluster: options.cluster } : {}),
  });
  await options.routes?.(app);
  return app;
}

const SECRET_QUERY_PARAMETERS = /([?&](?:apikey|token|password|secret)=)[^&#]*/gi;

/** The URL as it may be logged: values of secret-bearing query parameters replaced. */
export function redactQuery(url: string): string {
  return url.replace(SECRET_QUERY_PARAMETERS, '$1[redacted]');
}
