import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
} from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Logger } from 'pino';
import { Errors } from '../domain/errors.ts';
import { installQueryCoercion } from './query-coercion.ts';
import { installKnownKeysOnly } from './known-keys.ts';
import { installStorableText } from './storable-text.ts';
import {
  healthRoutes,
  type ClusterHealth,
  type InstanceHealthCounts,
  type RestoringHealth,
} from './routes/health.ts';
import type { EventLog } from '../store/port.ts';
import { installAuth, type AuthOptions } from './auth.ts';
import { installForwarding, type ForwardingOptions } from '../cluster/forwarding.ts';
import { defaultProfile } from './profiles/default.ts';
import type { EdgeProfile } from './profiles/profile.ts';
import { trustedProxies } from './client-address.ts';
import {
  DEFAULT_CONNECTION_LIMITS,
  capConnections,
  clientErrorHandler,
  closeUnreadRequests,
  requestTimeouts,
  type ConnectionLimits,
} from './connection-limits.ts';

export const BODY_LIMIT_BYTES = 1024 * 1024;

/** A route as registered, with its schema: what the route fuzzer (test/integration/security) walks. */
export interface RouteEntry {
  readonly method: string;
  readonly url: string;
  readonly schema: Readonly<Record<string, unknown>> | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route the app registered, in order (HEAD routes Fastify adds included). */
    readonly routeTable: readonly RouteEntry[];
  }
}

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
  /** Shown by /health: open instances on this node per health state (src/health). */
  readonly instanceHealth?: () => InstanceHealthCounts;
  /** Shown by /health when the store is unreachable: why, when zapwire knows (its embedded PostgreSQL). */
  readonly storeOutage?: () => string | undefined;
  /** Shown by /health: how far the restore after the start got. */
  readonly restoring?: () => RestoringHealth;
  /** TRUST_PROXY: true (any proxy) or the proxies' addresses/CIDRs, comma-separated. */
  readonly trustProxy?: boolean | string | undefined;
  /** The wire format (API_COMPAT); zapwire's own by default. */
  readonly profile?: EdgeProfile;
  /** Timeouts and connection caps against clients that hold connections (src/http/connection-limits.ts). */
  readonly connectionLimits?: ConnectionLimits;
  /** Cluster mode: requests for instances other nodes own go to them (src/cluster/forwarding.ts). */
  readonly forwarding?: ForwardingOptions;
  /** Registers route groups after the built-in ones (each `app.register` call is encapsulated). */
  readonly routes?: (app: FastifyInstance) => Promise<void>;
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const profile = options.profile ?? defaultProfile();
  const limits = options.connectionLimits ?? DEFAULT_CONNECTION_LIMITS;
  const timeouts = requestTimeouts(limits);
  const app: FastifyInstance = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    http: timeouts,
    requestTimeout: timeouts.requestTimeout,
    clientErrorHandler: clientErrorHandler(limits, (code, message) => profile.clientErrorBody(code, message)),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    return503OnClosing: true,
    // An absolute-form target (`POST http://host/instance/connect HTTP/1.1`, RFC 9112 3.2.2) becomes its
    // origin form before routing, so every hook, handler and forwarded request sees one spelling of the
    // path.
    rewriteUrl: (request) => originForm(request.url ?? '/'),
    // A malformed URL ('/instance/info/%') fails before routing, where Fastify would answer in its own
    // shape and quote the whole URL, query keys included: give the profile's error handler a 400 that
    // names no part of it.
    frameworkErrors: (error, request, reply) => {
      const refusal = Object.assign(
        new Error('malformed URL: a "%" not followed by two hex digits, or a path that is not UTF-8'),
        { code: error.code, statusCode: 400 },
      ) as FastifyError;
      return app.errorHandler(refusal, request, reply);
    },
    // TRUST_PROXY: read X-Forwarded-Proto/-For from these proxies (Secure cookies behind a TLS proxy).
    ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy } : {}),
    // Fastify's own request log prints the raw URL; ours redacts secrets a browser may put in the query.
    logController: new LogController({ disableRequestLogging: true }),
  });
  capConnections(app.server, limits, trustedProxies(options.trustProxy));
  closeUnreadRequests(app);
  const routeTable: RouteEntry[] = [];
  app.decorate('routeTable', routeTable);
  // Before any route is registered, so every one is seen (hooks reach encapsulated plugins).
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat())
      routeTable.push({ method, url: route.url, schema: route.schema as RouteEntry['schema'] });
    // A WebSocket route asked for without an upgrade: @fastify/websocket answers an empty 404 (a HEAD
    // too); answer 426 in the error shape instead. Runs before the plugin's own onRoute hook, which then
    // takes `wsHandler` for upgrades and leaves this handler to plain requests.
    if (route.websocket === true) {
      route.wsHandler = route.handler as unknown as NonNullable<typeof route.wsHandler>;
      route.websocket = false;
      route.handler = async (request) => {
        throw Errors.upgradeRequired(request.url.split('?')[0] ?? '');
      };
    }
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
  // Before auth: a forwarded request's signature is checked before auth takes its principal; the
  // forwarding decision comes after auth resolved the request's instance.
  const toOwner = options.forwarding ? installForwarding(app, options.forwarding) : undefined;
  installAuth(app, options.auth);
  if (toOwner) app.addHook('preHandler', toOwner);
  installQueryCoercion(app);
  installKnownKeysOnly(app);
  installStorableText(app);
  await profile.install(app);
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
    ...(options.instanceHealth ? { instanceHealth: options.instanceHealth } : {}),
    ...(options.storeOutage ? { storeOutage: options.storeOutage } : {}),
    ...(options.restoring ? { restoring: options.restoring } : {}),
  });
  // The routes whose wire shape is the profile's (src/http/profiles/profile.ts), then the rest.
  await app.register(profile.routes);
  await options.routes?.(app);
  return app;
}

const ABSOLUTE_FORM = /^https?:\/\/[^/?#]*(.*)$/is;

/** The path and query of a request target; an origin-form target (`/path?query`) as it is. */
export function originForm(target: string): string {
  const rest = ABSOLUTE_FORM.exec(target)?.[1];
  if (rest === undefined) return target;
  return rest.startsWith('/') ? rest : `/${rest}`;
}

const SECRET_QUERY_PARAMETERS = /([?&](?:apikey|token|password|secret)=)[^&#]*/gi;

/** The URL as it may be logged: values of secret-bearing query parameters replaced. */
export function redactQuery(url: string): string {
  return url.replace(SECRET_QUERY_PARAMETERS, '$1[redacted]');
}
