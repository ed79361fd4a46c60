/**
 * /manager/*: the manager page. Instances with live state; create, connect, QR, pairing code,
 * disconnect, logout, delete, advanced settings; links to the visualizer and the history. Plain HTML, CSS
 * and JavaScript served by the app (no framework, no CDN).
 *
 * Sign-in: the admin key is typed once (POST /manager/session, in the body) and exchanged for a
 * short-lived, HttpOnly session cookie the server holds (sign-out revokes it; opening the page rotates
 * it). The page then calls the REST API through /manager/api/<route>, which accepts that cookie plus the
 * CSRF header and forwards the request, unchanged, to the REST route with the admin key: one API, one
 * set of checks and error messages, and the key never reaches the browser's JavaScript or a URL.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { Errors } from '../../domain/errors.ts';
import type { BrowserSessions } from '../../visualizer/browser-session.ts';
import type { InspectionLog, TimelineEntry } from '../../visualizer/inspection-log.ts';
import { pageHeaders, sessionOf, signInPageOnRefusal } from '../browser-auth.ts';
import { errorResponseSchema } from '../errors.ts';
import { loadStaticFiles } from '../static-files.ts';

export interface ManagerRoutesOptions {
  readonly sessions: BrowserSessions;
  readonly inspection: InspectionLog;
  /** The global API key: what /manager/api forwards with. Never sent to the browser. */
  readonly adminApiKey: string;
  /** true when the key is the global API key (the only key that opens a browser session). */
  readonly isAdminKey: (apikey: string) => Promise<boolean>;
}

/** REST routes the manager may reach through its forwarder. */
const FORWARDED_PREFIXES = ['/instance/', '/admin/projections'];
const FORWARDED_HEADERS = ['content-type', 'retry-after', 'etag'];

export const managerRoutes: FastifyPluginAsync<ManagerRoutesOptions> = async (app, options) => {
  const { sessions, inspection } = options;
  const files = loadStaticFiles();
  const page = (name: string): Buffer => {
    const file = files.get(name);
    if (!file) throw new Error(`missing static file ${name}`);
    return file.body;
  };
  if (!app.hasDecorator('websocketServer')) {
    throw new Error('register @fastify/websocket once at the root before the manager routes');
  }
  const secure = (request: FastifyRequest): boolean => request.protocol === 'https';

  app.get<{ Params: { file: string } }>(
    '/manager/assets/:file',
    { config: { access: 'anyone' }, schema: { hide: true } },
    async (request, reply) => {
      const file = files.get(request.params.file);
      if (!file || file.type.startsWith('text/html')) throw Errors.validation('no such asset');
      reply
        .header('etag', file.etag)
        .header('cache-control', 'no-cache')
        .header('x-content-type-options', 'nosniff');
      if (request.headers['if-none-match'] === file.etag) return reply.status(304).send();
      return reply.type(file.type).send(file.body);
    },
  );

  app.get(
    '/manager',
    {
      config: { access: { browser: {} } },
      errorHandler: signInPageOnRefusal(page('login.html')),
      schema: { tags: ['manager'], summary: 'Manager page (admin)' },
    },
    async (request, reply) => {
      // Using the pages keeps the signed-in browser signed in (sliding expiry), each time with a new session.
      const session = sessionOf(request, sessions);
      if (session)
        reply.header(
          'set-cookie',
          sessions.cookie(sessions.rotate(session).value, { secure: secure(request) }),
        );
      return pageHeaders(reply, request).send(page('manager.html'));
    },
  );

  const sessionResponse = {
    type: 'object',
    properties: { expiresAt: { type: 'string' }, csrf: { type: 'string' } },
  } as const;

  app.post<{ Body: { apikey: string } }>(
    '/manager/session',
    {
      // This node's cookie: any node may sign a browser in.
      config: { access: 'anyone', runsOn: 'any' },
      schema: {
        tags: ['manager'],
        summary: 'Sign the browser in with the admin key (sets a short-lived HttpOnly cookie)',
        body: {
          type: 'object',
          required: ['apikey'],
          properties: { apikey: { type: 'string', minLength: 1, maxLength: 512 } },
        },
        response: { 200: sessionResponse, 401: errorResponseSchema, 403: errorResponseSchema },
      },
    },
    async (request, reply) => {
      app.keyGuesses.check(request);
      if (!(await options.isAdminKey(request.body.apikey.trim()))) {
        app.keyGuesses.failed(request);
        request.log.warn('manager sign-in refused');
        throw Errors.unauthorized();
      }
      const { value, session } = sessions.issue();
      reply.header('set-cookie', sessions.cookie(value, { secure: secure(request) }));
      return { expiresAt: session.expiresAt.toISOString(), csrf: sessions.csrfToken(session) };
    },
  );

  app.get(
    '/manager/session',
    {
      config: { access: 'anyone' },
      schema: {
        tags: ['manager'],
        summary: "The browser session's expiry and CSRF token (cookie)",
        response: { 200: sessionResponse, 401: errorResponseSchema },
      },
    },
    async (request) => {
      const session = sessionOf(request, sessions);
      if (!session) throw Errors.unauthorized();
      return { expiresAt: session.expiresAt.toISOString(), csrf: sessions.csrfToken(session) };
    },
  );

  app.delete(
    '/manager/session',
    { config: { access: 'anyone', runsOn: 'any' }, schema: { tags: ['manager'], summary: 'Sign out' } },
    async (request, reply) => {
      const session = sessionOf(request, sessions);
      if (session) sessions.revoke(session);
      reply.header('set-cookie', sessions.cookie('', { secure: secure(request) }));
      return reply.status(204).send();
    },
  );

  app.route<{ Params: { '*': string } }>({
    method: ['GET', 'POST', 'PUT', 'DELETE'],
    url: '/manager/api/*',
    // Re-enters this node's routes, where each forwards what needs the owner.
    config: { access: { browser: { csrf: true } }, runsOn: 'any' },
    schema: { hide: true },
    handler: async (request, reply) => {
      // Resolve dot segments (also percent-encoded ones) first: /manager/api/instance/../metrics must be
      // checked, and forwarded, as /metrics.
      const rest = request.url.slice('/manager/api'.length);
      let resolved: URL | undefined;
      try {
        resolved = new URL(rest, 'http://manager.invalid');
      } catch {
        resolved = undefined;
      }
      // `//host/...` and `/\host/...` would name another authority (and `/\p@p<` one the parser refuses).
      if (resolved?.host !== 'manager.invalid') {
        throw Errors.validation(
          `the manager cannot call ${rest.split('?')[0] ?? ''}: not a path of this API`,
        );
      }
      const target = `${resolved.pathname}${resolved.search}`;
      if (!FORWARDED_PREFIXES.some((prefix) => target.startsWith(prefix))) {
        throw Errors.validation(`the manager cannot call ${target.split('?')[0] ?? ''}`);
      }
      const hasBody = request.body !== undefined && request.body !== null;
      const response = await app.inject({
        method: request.method as 'GET' | 'POST' | 'PUT' | 'DELETE',
        url: target,
        headers: {
          apikey: options.adminApiKey,
          ...(hasBody ? { 'content-type': 'application/json' } : {}),
        },
        ...(hasBody ? { payload: JSON.stringify(request.body) } : {}),
      });
      for (const name of FORWARDED_HEADERS) {
        const value = response.headers[name];
        if (value !== undefined) reply.header(name, value);
      }
      return reply.status(response.statusCode).send(response.rawPayload);
    },
  });

  app.get(
    '/manager/live',
    {
      websocket: true,
      config: { access: { browser: { sameOrigin: true } } },
      schema: {
        tags: ['manager'],
        summary: 'WebSocket: one message per state-machine step of any instance (admin)',
      },
    },
    (socket) => {
      const unsubscribe = inspection.subscribe('*', (instanceId: string, entry: TimelineEntry) => {
        if (socket.readyState !== socket.OPEN) return;
        if (socket.bufferedAmount > 1024 * 1024) {
          socket.close(4008, 'too slow: reload the page');
          return;
        }
        socket.send(
          JSON.stringify({
            instanceId,
            state: entry.state,
            machineState: entry.to,
            event: entry.event,
            emitted: entry.emitted,
            at: entry.at,
          }),
        );
      });
      socket.on('close', unsubscribe);
      socket.on('error', unsubscribe);
    },
  );
};
