import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import { Errors } from '../../domain/errors.ts';
import { normaliseEventNames, UnknownEventNameError } from '../../domain/event-names.ts';
import type { AdvancedSettings, ProxyProtocol, SinkSettings } from '../../domain/events.ts';
import type { SqlExecutor } from '../../store/sql.ts';
import type { InstanceService, ProxyInput } from '../../runtime/service.ts';
import {
  findInstance,
  instanceLogs,
  listInstances,
  type InstanceView,
} from '../../../projections/queries.ts';
import { requireAdmin, requirePrincipal } from '../auth.ts';
import { errorResponseSchema } from '../errors.ts';
import {
  INSTANCE_NAME_PATTERN,
  INSTANCE_NAME_RULE,
  advancedSettingsResponse,
  advancedSettingsSchema,
  eventNames,
  flag,
  idParam,
  instanceNameQuery,
  instanceView,
  proxyInputSchema,
  proxyView,
  toFlag,
  webhookUrl,
} from '../schemas.ts';

export interface InstanceRoutesOptions {
  readonly service: InstanceService;
  readonly db: SqlExecutor;
}

type Flag = boolean | 'true' | 'false';

interface SinkBody {
  webhookUrl?: string | null;
  events?: string[] | string;
  subscribe?: string[] | string;
  rabbitmqEnable?: Flag;
  websocketEnable?: Flag;
  natsEnable?: Flag;
}

interface ProxyBody {
  host: string;
  port: number | string;
  protocol?: ProxyProtocol | 'socks';
  username?: string;
  password?: string;
}

const errors = {
  400: errorResponseSchema,
  401: errorResponseSchema,
  403: errorResponseSchema,
  404: errorResponseSchema,
  409: errorResponseSchema,
};

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

function publicView(instance: InstanceView): Record<string, unknown> {
  const { qrcode, ...rest } = instance;
  return { ...rest, qrcodeExpiresAt: qrcode?.expiresAt ?? null };
}

function stateOf(instance: InstanceView, message?: string): Record<string, unknown> {
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

function parseSinks(body: SinkBody): Partial<SinkSettings> {
  const sinks: { -readonly [K in keyof SinkSettings]?: SinkSettings[K] } = {};
  if (body.webhookUrl !== undefined) sinks.webhookUrl = body.webhookUrl === '' ? null : body.webhookUrl;
  const names = body.subscribe ?? body.events;
  if (names !== undefined) {
    try {
      const normalised = normaliseEventNames(names);
      if (normalised.length === 0)
        throw Errors.validation('subscribe: give at least one event name, or ["ALL"]');
      sinks.events = normalised;
    } catch (error) {
      if (error instanceof UnknownEventNameError)
        throw Errors.validation(error.message, { unknown: error.unknown });
      throw error;
    }
  }
  const rabbit = toFlag(body.rabbitmqEnable);
  const ws = toFlag(body.websocketEnable);
  const nats = toFlag(body.natsEnable);
  if (rabbit !== undefined) sinks.rabbitmqEnable = rabbit;
  if (ws !== undefined) sinks.websocketEnable = ws;
  if (nats !== undefined) sinks.natsEnable = nats;
  return sinks;
}

function parseProxy(body: ProxyBody): ProxyInput {
  const port = typeof body.port === 'string' ? Number(body.port) : body.port;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw Errors.validation('port: expected 1 to 65535');
  const protocol: ProxyProtocol = body.protocol === 'socks' ? 'socks5' : (body.protocol ?? 'http');
  return {
    host: body.host,
    port,
    protocol,
    ...(body.username ? { username: body.username } : {}),
    ...(body.password ? { password: body.password } : {}),
  };
}

const sinkProperties = {
  webhookUrl,
  subscribe: eventNames,
  events: eventNames,
  rabbitmqEnable: flag,
  websocketEnable: flag,
  natsEnable: flag,
} as const;

export const instanceRoutes: FastifyPluginAsync<InstanceRoutesOptions> = async (app, { service, db }) => {
  /** The instance a request acts on: the token's own, or the one the admin names. */
  async function target(request: FastifyRequest, reference: string | undefined): Promise<InstanceView> {
    const principal = requirePrincipal(request);
    const ref = reference?.trim() || undefined;
    if (principal.role === 'instance') {
      const own = await findInstance(db, principal.instanceId);
      if (!own) throw Errors.unauthorized();
      if (ref && ref !== own.id && ref.toLowerCase() !== own.name.toLowerCase())
        throw Errors.forbidden(`instance "${ref}"`);
      return own;
    }
    if (!ref) throw Errors.instanceNameRequired();
    const instance = await findInstance(db, ref);
    if (!instance) throw Errors.instanceNotFound(ref);
    return instance;
  }

  app.post<{
    Body: SinkBody & {
      name: string;
      token?: string;
      proxy?: ProxyBody;
      advancedSettings?: Partial<AdvancedSettings>;
    };
  }>(
    '/instance/create',
    {
      schema: {
        tags: ['instances'],
        summary: 'Create an instance (admin). Does not connect yet.',
        body: {
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
              minLength: 8,
              maxLength: 256,
              pattern: '^[\\x21-\\x7e]+$',
              description: 'printable ASCII, no spaces; generated when absent',
            },
            ...sinkProperties,
            proxy: proxyInputSchema,
            advancedSettings: advancedSettingsSchema,
          },
        },
        response: {
          201: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              name: { type: 'string' },
              token: { type: 'string' },
              webhookSecret: { type: 'string' },
              connected: { type: 'boolean' },
              state: { type: 'string' },
            },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      requireAdmin(request);
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

  app.get(
    '/instance/all',
    {
      schema: {
        tags: ['instances'],
        summary: 'Every instance (admin); tokens are never listed',
        response: { 200: { type: 'array', items: instanceView }, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      return (await listInstances(db)).map(publicView);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/instance/info/:id',
    {
      schema: {
        tags: ['instances'],
        summary: 'One instance by id or name (admin)',
        params: idParam,
        response: { 200: instanceView, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const instance = await findInstance(db, request.params.id);
      if (!instance) throw Errors.instanceNotFound(request.params.id);
      return publicView(instance);
    },
  );

  app.get<{ Querystring: { instanceName?: string } }>(
    '/instance/status',
    {
      schema: {
        tags: ['instances'],
        summary: 'Connection state',
        querystring: instanceNameQuery,
        response: {
          200: {
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
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const i = await target(request, request.query.instanceName);
      return {
        id: i.id,
        instanceName: i.name,
        state: i.state,
        connected: i.connected,
        loggedIn: i.loggedIn,
        jid: i.jid,
        name: i.profileName,
        lastDisconnect: i.lastDisconnect,
      };
    },
  );

  app.post<{ Body: SinkBody & { instanceName?: string } }>(
    '/instance/connect',
    {
      schema: {
        tags: ['lifecycle'],
        summary:
          'Start connecting (asynchronous): the QR code appears a few seconds later at GET /instance/qr',
        body: {
          type: ['object', 'null'],
          properties: { instanceName: { type: 'string', maxLength: 128 }, ...sinkProperties },
        },
        response: { 200: stateResponse, ...errors },
      },
    },
    async (request) => {
      const body = request.body ?? {};
      const i = await target(request, body.instanceName);
      const sinks = parseSinks(body);
      const after = await service.connect(i.id, Object.keys(sinks).length > 0 ? sinks : undefined);
      return stateOf(
        after,
        after.state === 'open'
          ? 'already connected'
          : 'connecting: fetch the QR code with GET /instance/qr in 2-3 seconds',
      );
    },
  );

  app.get<{ Querystring: { instanceName?: string } }>(
    '/instance/qr',
    {
      schema: {
        tags: ['lifecycle'],
        summary: 'The current QR code: "<png data url>|<code>"',
        querystring: instanceNameQuery,
        response: {
          200: {
            type: 'object',
            properties: {
              qrcode: { type: 'string' },
              code: { type: 'string' },
              expiresAt: { type: 'string' },
              count: { type: 'integer' },
              pairingCode: { type: ['string', 'null'] },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const i = await target(request, request.query.instanceName);
      if (i.state === 'open') throw Errors.alreadyConnected();
      if (!i.qrcode || i.state !== 'qr') throw Errors.qrNotReady(i.state);
      const png = await QRCode.toDataURL(i.qrcode.code, { errorCorrectionLevel: 'L', margin: 2, width: 300 });
      return {
        qrcode: `${png}|${i.qrcode.code}`,
        code: i.qrcode.code,
        expiresAt: i.qrcode.expiresAt,
        count: i.qrcode.count,
        pairingCode: i.pairingCode,
      };
    },
  );

  app.post<{ Body: { instanceName?: string; phone: string } }>(
    '/instance/pair',
    {
      schema: {
        tags: ['lifecycle'],
        summary: 'Pair with an 8-character code typed on the phone instead of scanning the QR code',
        body: {
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
        },
        response: { 200: { type: 'object', properties: { pairingCode: { type: 'string' } } }, ...errors },
      },
    },
    async (request) => {
      const i = await target(request, request.body.instanceName);
      const phone = request.body.phone.replace(/\D/g, '');
      if (phone.length < 8 || phone.length > 15)
        throw Errors.validation('phone: expected 8 to 15 digits with the country code, e.g. 5511999999999');
      return service.requestPairingCode(i.id, phone);
    },
  );

  const lifecycle = (
    path: string,
    summary: string,
    run: (id: string) => Promise<InstanceView>,
    method: 'POST' | 'DELETE' = 'POST',
  ) =>
    app.route<{ Body: { instanceName?: string } | undefined; Querystring: { instanceName?: string } }>({
      method,
      url: path,
      schema: {
        tags: ['lifecycle'],
        summary,
        querystring: instanceNameQuery,
        ...(method === 'POST'
          ? {
              body: {
                type: ['object', 'null'],
                properties: { instanceName: { type: 'string', maxLength: 128 } },
              },
            }
          : {}),
        response: { 200: stateResponse, 429: errorResponseSchema, ...errors },
      },
      handler: async (request) => {
        const i = await target(request, request.body?.instanceName ?? request.query.instanceName);
        return stateOf(await run(i.id));
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

  app.post<{ Params: { id: string }; Body: { number?: string } | null }>(
    '/instance/forcereconnect/:id',
    {
      schema: {
        tags: ['lifecycle'],
        summary:
          'Drop the connection and connect again at once with the saved session (admin; not rate-limited)',
        params: idParam,
        body: { type: ['object', 'null'], properties: { number: { type: 'string', maxLength: 64 } } },
        response: { 200: stateResponse, ...errors },
      },
    },
    async (request) => {
      requireAdmin(request);
      const i = await target(request, request.params.id);
      await service.disconnect(i.id);
      return stateOf(await service.connect(i.id));
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/instance/delete/:id',
    {
      schema: {
        tags: ['instances'],
        summary: 'Delete an instance and everything it holds (admin, irreversible)',
        params: idParam,
        response: {
          200: {
            type: 'object',
            properties: { id: { type: 'string' }, name: { type: 'string' }, deleted: { type: 'boolean' } },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const i = await target(request, request.params.id);
      await service.delete(i.id, 'admin');
      return { id: i.id, name: i.name, deleted: true };
    },
  );

  const settingsRoute = {
    schema: { tags: ['settings'], params: idParam, response: { 200: advancedSettingsResponse, ...errors } },
  };
  app.get<{ Params: { id: string } }>('/instance/:id/advanced-settings', settingsRoute, async (request) => {
    return (await target(request, request.params.id)).advancedSettings;
  });
  for (const method of ['PUT', 'POST'] as const) {
    app.route<{ Params: { id: string }; Body: Partial<AdvancedSettings> }>({
      method,
      url: '/instance/:id/advanced-settings',
      schema: {
        ...settingsRoute.schema,
        summary: 'Change advanced settings; applies at once, no reconnect',
        body: advancedSettingsSchema,
      },
      handler: async (request) => {
        const i = await target(request, request.params.id);
        if (!request.body || Object.keys(request.body).length === 0) {
          throw Errors.validation(
            'send at least one setting: alwaysOnline, rejectCall, msgRejectCall, readMessages, ignoreGroups, ignoreStatus',
          );
        }
        return service.changeAdvancedSettings(i.id, request.body);
      },
    });
  }

  app.route<{ Params: { id: string }; Body: SinkBody }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/events',
    schema: {
      tags: ['settings'],
      summary:
        'Change where events go and which (webhookUrl, subscribe, rabbitmqEnable, websocketEnable, natsEnable)',
      params: idParam,
      body: { type: 'object', properties: sinkProperties },
      response: { 200: { type: 'object', additionalProperties: true }, ...errors },
    },
    handler: async (request) => {
      const i = await target(request, request.params.id);
      const sinks = parseSinks(request.body ?? {});
      if (Object.keys(sinks).length === 0)
        throw Errors.validation(
          'send at least one of webhookUrl, subscribe, rabbitmqEnable, websocketEnable, natsEnable',
        );
      return service.configureSinks(i.id, sinks);
    },
  });

  app.post<{ Params: { id: string }; Body: ProxyBody }>(
    '/instance/proxy/:id',
    {
      schema: {
        tags: ['settings'],
        summary: 'Set the proxy (admin); applies on the next connection: reconnect to use it',
        params: idParam,
        body: proxyInputSchema,
        response: {
          200: { type: 'object', properties: { proxy: proxyView, message: { type: 'string' } } },
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const i = await target(request, request.params.id);
      const proxy = await service.configureProxy(i.id, parseProxy(request.body));
      return { proxy, message: 'proxy saved: it applies on the next connection (POST /instance/reconnect)' };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/instance/proxy/:id',
    {
      schema: {
        tags: ['settings'],
        summary: 'Remove the proxy (admin); applies on the next connection',
        params: idParam,
        response: {
          200: { type: 'object', properties: { proxy: { type: 'null' }, message: { type: 'string' } } },
          ...errors,
        },
      },
    },
    async (request) => {
      requireAdmin(request);
      const i = await target(request, request.params.id);
      await service.removeProxy(i.id);
      return { proxy: null, message: 'proxy removed: direct connection from the next connection on' };
    },
  );

  const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
  app.get<{ Params: { id: string }; Querystring: { level?: string; limit?: string; since?: string } }>(
    '/instance/logs/:id',
    {
      schema: {
        tags: ['instances'],
        summary: 'Instance log, newest first; level=ERROR gives errors, WARN warnings and errors, ...',
        params: idParam,
        querystring: {
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
        },
        response: {
          200: {
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
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const i = await target(request, request.params.id);
      const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
      if (limit < 1 || limit > 1000) throw Errors.validation('limit: expected 1 to 1000');
      const wanted = request.query.level?.toLowerCase().replace('warning', 'warn');
      const levels = wanted ? LEVELS.slice(LEVELS.indexOf(wanted as (typeof LEVELS)[number])) : undefined;
      return instanceLogs(db, i.id, {
        limit,
        ...(levels ? { levels } : {}),
        ...(request.query.since ? { since: request.query.since } : {}),
      });
    },
  );

  app.post<{ Body: { instanceName?: string; number: string; text: string } }>(
    '/send/text',
    {
      schema: {
        tags: ['messages'],
        summary: 'Send a text message (instance token, or the admin key with instanceName)',
        body: {
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
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              status: { type: 'string' },
              timestamp: { type: 'string' },
              to: { type: 'string' },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const i = await target(request, request.body.instanceName);
      return service.sendText(i.id, request.body.number, request.body.text);
    },
  );
};
