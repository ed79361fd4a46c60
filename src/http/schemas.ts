/**
 * JSON schemas shared by the REST routes, each declared once: the TypeScript types of bodies and queries
 * are derived from them (`FromSchema`), never written a second time. Also the parsing of the two
 * inputs several routes take (sink settings, a proxy) into what the runtime expects.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { Errors } from '../domain/errors.ts';
import { normaliseEventNames, UnknownEventNameError } from '../domain/event-names.ts';
import type { ProxyProtocol, SinkSettings } from '../domain/events.ts';
import type { ProxyInput } from '../runtime/service.ts';
import { errorResponseSchema } from './errors.ts';

/** The error replies a route may give, for the OpenAPI document. */
export const errorResponses = {
  400: errorResponseSchema,
  401: errorResponseSchema,
  403: errorResponseSchema,
  404: errorResponseSchema,
  409: errorResponseSchema,
} as const;

export const INSTANCE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';
export const INSTANCE_NAME_RULE =
  '1-64 characters: letters, digits, "-" and "_", starting with a letter or digit (it becomes part of RabbitMQ routing keys and NATS subjects)';

/** The specification writes flags as "true"/"false" strings; both forms are accepted. */
export const flag = { anyOf: [{ type: 'boolean' }, { type: 'string', enum: ['true', 'false'] }] } as const;

export function toFlag(value: boolean | 'true' | 'false' | undefined): boolean | undefined {
  return value === undefined ? undefined : value === true || value === 'true';
}

export const eventNames = {
  anyOf: [
    { type: 'array', items: { type: 'string', maxLength: 64 }, maxItems: 64 },
    { type: 'string', maxLength: 1024 },
  ],
  description: 'Event names (array or comma-separated): ALL, MESSAGE, MESSAGE_SENT, ... (aliases accepted)',
} as const;

export const webhookUrl = {
  anyOf: [{ type: 'string', maxLength: 2048, pattern: '^https?://' }, { type: 'null' }],
  description: 'http(s) URL that receives the subscribed events; null or "" removes it',
} as const;

export const advancedSettingsSchema = {
  type: 'object',
  properties: {
    alwaysOnline: { type: 'boolean' },
    rejectCall: { type: 'boolean' },
    msgRejectCall: { type: 'string', maxLength: 4096 },
    readMessages: { type: 'boolean' },
    ignoreGroups: { type: 'boolean' },
    ignoreStatus: { type: 'boolean' },
  },
} as const;

export const advancedSettingsResponse = {
  type: 'object',
  properties: {
    alwaysOnline: { type: 'boolean' },
    rejectCall: { type: 'boolean' },
    msgRejectCall: { type: 'string' },
    readMessages: { type: 'boolean' },
    ignoreGroups: { type: 'boolean' },
    ignoreStatus: { type: 'boolean' },
  },
} as const;

export const proxyInputSchema = {
  type: 'object',
  required: ['host', 'port'],
  properties: {
    host: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[^\\s/:@]+$|^\\[[0-9a-fA-F:]+\\]$' },
    port: {
      anyOf: [
        { type: 'integer', minimum: 1, maximum: 65535 },
        { type: 'string', pattern: '^[0-9]{1,5}$' },
      ],
    },
    protocol: { type: 'string', enum: ['http', 'https', 'socks5', 'socks'] },
    username: { type: 'string', maxLength: 256 },
    password: { type: 'string', maxLength: 256 },
  },
} as const;

export const proxyView = {
  anyOf: [
    {
      type: 'object',
      properties: {
        host: { type: 'string' },
        port: { type: 'integer' },
        protocol: { type: 'string' },
        username: { type: 'string' },
        hasPassword: { type: 'boolean' },
      },
    },
    { type: 'null' },
  ],
} as const;

export const instanceView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    state: { type: 'string', enum: ['created', 'disconnected', 'connecting', 'qr', 'open', 'deleted'] },
    connected: { type: 'boolean' },
    loggedIn: { type: 'boolean' },
    jid: { type: ['string', 'null'] },
    profileName: { type: ['string', 'null'] },
    qrcodeExpiresAt: { type: ['string', 'null'] },
    pairingCode: { type: ['string', 'null'] },
    webhookUrl: { type: ['string', 'null'] },
    events: { type: 'array', items: { type: 'string' } },
    rabbitmqEnable: { type: 'boolean' },
    websocketEnable: { type: 'boolean' },
    natsEnable: { type: 'boolean' },
    advancedSettings: advancedSettingsResponse,
    proxy: proxyView,
    lastDisconnect: {
      anyOf: [
        {
          type: 'object',
          properties: {
            reason: { type: 'string' },
            code: { type: ['integer', 'null'] },
            at: { type: 'string' },
          },
        },
        { type: 'null' },
      ],
    },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    health: {
      type: 'object',
      description:
        'Whether the instance really hears WhatsApp (GET /instance/:id/health has each link): an instance that is not open is down',
      properties: {
        state: { type: 'string', enum: ['healthy', 'degraded', 'down'] },
        reason: { type: ['string', 'null'] },
        needsAttention: { type: 'boolean' },
        since: { type: 'string' },
      },
    },
  },
} as const;

export const instanceNameQuery = {
  type: 'object',
  properties: { instanceName: { type: 'string', maxLength: 128 } },
} as const;

export const idParam = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

export type IdParam = FromSchema<typeof idParam>;
export type InstanceNameQuery = FromSchema<typeof instanceNameQuery>;

/** The sink settings a body may carry (create, connect, PUT /instance/:id/events). */
export const sinkProperties = {
  webhookUrl,
  subscribe: eventNames,
  events: eventNames,
  rabbitmqEnable: flag,
  websocketEnable: flag,
  natsEnable: flag,
} as const;

export const sinkBody = { type: 'object', properties: sinkProperties } as const;
export type SinkBody = FromSchema<typeof sinkBody>;
export type ProxyBody = FromSchema<typeof proxyInputSchema>;
export type AdvancedSettingsBody = FromSchema<typeof advancedSettingsSchema>;

export function parseSinks(body: SinkBody): Partial<SinkSettings> {
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

export function parseProxy(body: ProxyBody): ProxyInput {
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
