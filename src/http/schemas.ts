/** Shared JSON-schema fragments for the REST API. */

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
