/**
 * /instance/<action>: create, list, look up, connect (QR or pairing code), reconnect, disconnect,
 * logout, delete, proxy and logs. Settings under /instance/:id/ are in instance-settings.ts, webhook
 * deliveries in instance-webhook.ts, the audit history in instance-history.ts.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../../domain/errors.ts';
import { MIN_TOKEN_DISTINCT_CHARACTERS, MIN_TOKEN_LENGTH } from '../../domain/tokens.ts';
import type { InstanceService, InstanceStatus } from '../../runtime/service.ts';
import type { SqlExecutor } from '../../store/sql.ts';
import type { InstanceHealth } from '../../health/types.ts';
import { instanceLogs, listInstancesPage, type InstanceView } from '../../../projections/queries.ts';
import { viewOf } from '../auth.ts';
import { currentQr, pairingPhone } from '../qr-and-pairing.ts';
import { errorResponseSchema } from '../errors.ts';
import { instancePageOf, instancePageQuery, linkNextPage } from '../instance-pages.ts';
import {
  INSTANCE_NAME_PATTERN,
  INSTANCE_NAME_RULE,
  advancedSettingsSchema,
  errorResponses,
  idParam,
  instanceNameQuery,
  instanceView,
  parseProxy,
  parseSinks,
  proxyInputSchema,
  proxyView,
  sinkProperties,
  type IdParam,
  type InstanceNameQuery,
  type ProxyBody,
} from '../schemas.ts';

export interface InstanceRoutesOptions {
  readonly service: InstanceService;
  readonly db: SqlExecutor;
  /** The instance's health (src/health), summarised in status and listings; absent: not shown. */
  readonly health?: (instanceId: string, state: string) => InstanceHealth;
}

/** What status and listings show of an instance's health (GET /instance/:id/health has the links). */
function healthSummary(health: InstanceHealth): Record<string, unknown> {
  return {
    state: health.state,
    reason: health.reason,
    needsAttention: health.needsAttention,
    since: health.since,
  };
}

const createBody = {
  type: 'object',
  required: ['name'],
  properties: {
    name: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      pattern: INSTANCE_NAME_PATTERN,
      description: INSTANCE_NAME_RULE,
    },
    token: {
      type: 'string',
      minLength: MIN_TOKEN_LENGTH,
      maxLength: 256,
      pattern: '^[\\x21-\\x7e]+$',
      description: `printable ASCII, no spaces, at least ${MIN_TOKEN_LENGTH} characters with at least ${MIN_TOKEN_DISTINCT_CHARACTERS} different ones; generated when absent`,
    },
    ...sinkProperties,
    proxy: proxyInputSchema,
    advancedSettings: advancedSettingsSchema,
  },
} as const;

const createResponse = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    token: { type: 'string' },
    webhookSecret: { type: 'string' },
    connected: { type: 'boolean' },
    state: { type: 'string' },
  },
} as const;

const statusResponse = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    instanceName: { type: 'string' },
    state: { type: 'string' },
    connected: { type: 'boolean' },
    loggedIn: { type: 'boolean' },
    jid: { type: ['string', 'null'] },
    name: { type: ['string', 'null'], description: 'WhatsApp profile (push) name' },
    lastDisconnect: instanceView.properties.lastDisconnect,
    health: instanceView.properties.health,
  },
} as const;

const connectBody = {
  type: ['object', 'null'],
  properties: { instanceName: { type: 'string', maxLength: 128 }, ...sinkProperties },
} as const;

/** Lifecycle commands name their instance in the body (POST) or the query (DELETE, or either). */
const instanceNameBody = {
  type: ['object', 'null'],
  properties: { instanceName: { type: 'string', maxLength: 128 } },
} as const;

const stateResponse = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    state: { type: 'string' },
    connected: { type: 'boolean' },
    loggedIn: { type: 'boolean' },
    jid: { type: ['string', 'null'] },
    message: { type: 'string' },
  },
} as const;

const qrResponse = {
  type: 'object',
  properties: {
    qrcode: { type: 'string' },
    code: { type: 'string' },
    expiresAt: { type: 'string' },
    count: { type: 'integer' },
    pairingCode: { type: ['string', 'null'] },
  },
} as const;

const pairBody = {
  type: 'object',
  required: ['phone'],
  properties: {
    instanceName: { type: 'string', maxLength: 128 },
    phone: {
      type: 'string',
      pattern: '^\\+?[0-9 ()-]{8,24}$',
      description: 'international number, digits only (e.g. 5511999999999)',
    },
  },
} as const;

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

const logsQuery = {
  type: 'object',
  properties: {
    level: {
      type: 'string',
      pattern:
        '^([Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn]([Ii][Nn][Gg])?|[Ee][Rr][Rr][Oo][Rr])$',
    },
    limit: { type: 'string', pattern: '^[0-9]{1,4}$' },
    since: { type: 'string', format: 'date-time' },
  },
} as const;

const logsResponse = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      level: { type: 'string' },
      message: { type: 'string' },
      context: { type: 'object', additionalProperties: true },
      at: { type: 'string' },
    },
  },
} as const;

function publicView(instance: InstanceView): Record<string, unknown> {
  const { qrcode, ...rest } = instance;
  return { ...rest, qrcodeExpiresAt: qrcode?.expiresAt ?? null };
}

function stateOf(instance: InstanceStatus, message?: string): Record<string, unknown> {
  return {
    id: instance.id,
    name: instance.name,
    state: instance.state,
    connected: instance.connected,
    loggedIn: instance.loggedIn,
    jid: instance.jid,
    ...(message ? { message } : {}),
  };
}

export const instanceRoutes: FastifyPluginAsync<InstanceRoutesOptions> = async (
  app,
  { service, db, health },
) => {
  const withHealth = (instance: InstanceView): Record<string, unknown> => ({
    ...publicView(instance),
    ...(health ? { health: healthSummary(health(instance.id, instance.state)) } : {}),
  });
  app.post<{ Body: FromSchema<typeof createBody> }>(
    '/instance/create',
    {
      config: { access: 'admin', runsOn: 'any' },
      schema: {
        tags: ['instances'],
        summary: 'Create an instance (admin). Does not connect yet.',
        body: createBody,
        response: { 201: createResponse, ...errorResponses },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const { instance, token, webhookSecret } = await service.create({
        name: body.name,
        ...(body.token ? { token: body.token } : {}),
        sinks: parseSinks(body),
        ...(body.proxy ? { proxy: parseProxy(body.proxy) } : {}),
        ...(body.advancedSettings ? { advancedSettings: body.advancedSettings } : {}),
      });
      return reply.status(201).send({
        id: instance.id,
        name: instance.name,
        token,
        webhookSecret,
        connected: false,
        state: instance.state,
      });
    },
  );

  app.get<{ Querystring: FromSchema<typeof instancePageQuery> }>(
    '/instance/all',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['instances'],
        summary:
          'Instances in creation order, a page at a time (admin); tokens are never listed. `limit` (default 500, at most 1000); `after=<createdAt>,<id>` of the last instance of the previous page; a `Link: <…>; rel="next"` header when more follow',
        querystring: instancePageQuery,
        response: { 200: { type: 'array', items: instanceView }, ...errorResponses },
      },
    },
    async (request, reply) => {
      const { limit, after } = instancePageOf(request.query);
      const page = await listInstancesPage(db, { limit, after });
      linkNextPage(reply, '/instance/all', limit, page.next);
      return page.views.map(withHealth);
    },
  );

  app.get<{ Params: IdParam }>(
    '/instance/info/:id',
    {
      config: { access: 'admin', instanceFrom: ['params.id'] },
      schema: {
        tags: ['instances'],
        summary: 'One instance by id or name (admin)',
        params: idParam,
        response: { 200: instanceView, ...errorResponses },
      },
    },
    async (request) => {
      return withHealth(viewOf(request.instance));
    },
  );

  app.get<{ Querystring: InstanceNameQuery }>(
    '/instance/status',
    {
      config: { access: 'caller', instanceFrom: ['query.instanceName'] },
      schema: {
        tags: ['instances'],
        summary: 'Connection state',
        querystring: instanceNameQuery,
        response: { 200: statusResponse, ...errorResponses },
      },
    },
    async (request) => {
      const i = viewOf(request.instance);
      return {
        id: i.id,
        instanceName: i.name,
        state: i.state,
        connected: i.connected,
        loggedIn: i.loggedIn,
        jid: i.jid,
        name: i.profileName,
        lastDisconnect: i.lastDisconnect,
        ...(health ? { health: healthSummary(health(i.id, i.state)) } : {}),
      };
    },
  );

  app.post<{ Body: FromSchema<typeof connectBody> }>(
    '/instance/connect',
    {
      config: { access: 'caller', instanceFrom: ['body.instanceName'], runsOn: 'owner' },
      schema: {
        tags: ['lifecycle'],
        summary:
          'Start connecting (asynchronous): the QR code appears a few seconds later at GET /instance/qr',
        body: connectBody,
        response: { 200: stateResponse, ...errorResponses },
      },
    },
    async (request) => {
      const body = request.body ?? {};
      const { id } = request.instance;
      const sinks = parseSinks(body);
      const after = await service.connect(id, Object.keys(sinks).length > 0 ? sinks : undefined);
      return stateOf(
        after,
        after.state === 'open'
          ? 'already connected'
          : 'connecting: fetch the QR code with GET /instance/qr in 2-3 seconds',
      );
    },
  );

  app.get<{ Querystring: InstanceNameQuery }>(
    '/instance/qr',
    {
      config: { access: 'caller', instanceFrom: ['query.instanceName'] },
      schema: {
        tags: ['lifecycle'],
        summary: 'The current QR code: "<png data url>|<code>"',
        querystring: instanceNameQuery,
        response: { 200: qrResponse, ...errorResponses },
      },
    },
    async (request) => currentQr(viewOf(request.instance)),
  );

  app.post<{ Body: FromSchema<typeof pairBody> }>(
    '/instance/pair',
    {
      config: { access: 'caller', instanceFrom: ['body.instanceName'], runsOn: 'owner' },
      schema: {
        tags: ['lifecycle'],
        summary: 'Pair with an 8-character code typed on the phone instead of scanning the QR code',
        body: pairBody,
        response: {
          200: { type: 'object', properties: { pairingCode: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      return service.requestPairingCode(request.instance.id, pairingPhone(request.body.phone));
    },
  );

  const lifecycle = (
    path: string,
    summary: string,
    run: (id: string) => Promise<InstanceStatus>,
    method: 'POST' | 'DELETE' = 'POST',
  ) =>
    app.route<{ Body: FromSchema<typeof instanceNameBody> | undefined; Querystring: InstanceNameQuery }>({
      method,
      url: path,
      config: {
        access: 'caller',
        instanceFrom: ['body.instanceName', 'query.instanceName'],
        runsOn: 'owner',
      },
      schema: {
        tags: ['lifecycle'],
        summary,
        querystring: instanceNameQuery,
        ...(method === 'POST' ? { body: instanceNameBody } : {}),
        response: { 200: stateResponse, 429: errorResponseSchema, ...errorResponses },
      },
      handler: async (request) => {
        const { id } = request.instance;
        return stateOf(await run(id));
      },
    });
  lifecycle('/instance/reconnect', 'Reconnect with the saved session (no QR); at most once a minute', (id) =>
    service.reconnect(id),
  );
  lifecycle('/instance/disconnect', 'Close the connection, keep the session (reconnect needs no QR)', (id) =>
    service.disconnect(id),
  );
  lifecycle('/instance/logout', 'Remove the WhatsApp session (the next connect needs a QR)', (id) =>
    service.logout(id),
  );
  lifecycle(
    '/instance/logout',
    'Remove the WhatsApp session (the next connect needs a QR)',
    (id) => service.logout(id),
    'DELETE',
  );

  app.post<{ Params: IdParam; Body: { number?: string } | null }>(
    '/instance/forcereconnect/:id',
    {
      config: { access: 'admin', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['lifecycle'],
        summary:
          'Drop the connection and connect again at once with the saved session (admin; not rate-limited)',
        params: idParam,
        body: { type: ['object', 'null'], properties: { number: { type: 'string', maxLength: 64 } } },
        response: { 200: stateResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      await service.disconnect(id);
      return stateOf(await service.connect(id));
    },
  );

  app.delete<{ Params: IdParam }>(
    '/instance/delete/:id',
    {
      config: { access: 'admin', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['instances'],
        summary: 'Delete an instance and everything it holds (admin, irreversible)',
        params: idParam,
        response: {
          200: {
            type: 'object',
            properties: { id: { type: 'string' }, name: { type: 'string' }, deleted: { type: 'boolean' } },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const i = request.instance;
      await service.delete(i.id, 'admin');
      return { id: i.id, name: i.name, deleted: true };
    },
  );

  app.post<{ Params: IdParam; Body: ProxyBody }>(
    '/instance/proxy/:id',
    {
      config: { access: 'admin', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['settings'],
        summary: 'Set the proxy (admin); applies on the next connection: reconnect to use it',
        params: idParam,
        body: proxyInputSchema,
        response: {
          200: { type: 'object', properties: { proxy: proxyView, message: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { id } = request.instance;
      const proxy = await service.configureProxy(id, parseProxy(request.body));
      return { proxy, message: 'proxy saved: it applies on the next connection (POST /instance/reconnect)' };
    },
  );

  app.delete<{ Params: IdParam }>(
    '/instance/proxy/:id',
    {
      config: { access: 'admin', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['settings'],
        summary: 'Remove the proxy (admin); applies on the next connection',
        params: idParam,
        response: {
          200: { type: 'object', properties: { proxy: { type: 'null' }, message: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { id } = request.instance;
      await service.removeProxy(id);
      return { proxy: null, message: 'proxy removed: direct connection from the next connection on' };
    },
  );

  app.get<{ Params: IdParam; Querystring: FromSchema<typeof logsQuery> }>(
    '/instance/logs/:id',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['instances'],
        summary: 'Instance log, newest first; level=ERROR gives errors, WARN warnings and errors, ...',
        params: idParam,
        querystring: logsQuery,
        response: { 200: logsResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
      if (limit < 1 || limit > 1000) throw Errors.validation('limit: expected 1 to 1000');
      const wanted = request.query.level?.toLowerCase().replace('warning', 'warn');
      const levels = wanted ? LEVELS.slice(LEVELS.indexOf(wanted as (typeof LEVELS)[number])) : undefined;
      return instanceLogs(db, id, {
        limit,
        ...(levels ? { levels } : {}),
        ...(request.query.since ? { since: request.query.since } : {}),
      });
    },
  );
};
