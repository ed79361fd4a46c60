/**
 * Evolution GO's request bodies, read the way its handlers read them (Go's JSON decoder: unknown fields
 * ignored, a wrong type is a 400 naming the field) and turned into what zapwire's routes take. Pure: each
 * function returns the normalised input or throws an EvolutionError with Evolution GO's text.
 */
import type { AdvancedSettings, ProxyProtocol } from '../../../domain/events.ts';
import { isEvolutionEventName, sinkEventsOf, type EvolutionEventName } from './event-names.ts';

/** An error answered as `{"error": message}` with this status. */
export class EvolutionError extends Error {
  override readonly name = 'EvolutionError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const bad = (message: string): EvolutionError => new EvolutionError(400, message);

type Json = Record<string, unknown>;

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value === 'number' ? 'number' : typeof value;
}

/** Go's decoder error for a value of the wrong type. */
function typeError(struct: string, field: string, value: unknown, goType: string): EvolutionError {
  return bad(
    `json: cannot unmarshal ${jsonType(value)} into Go struct field ${struct}.${field} of type ${goType}`,
  );
}

/**
 * The body as an object. Go answers `EOF` for an empty body; a JSON `null`, an array or a scalar is
 * refused as in Evolution GO 0.7.
 */
export function objectBody(body: unknown, struct: string): Json {
  if (body === undefined) throw bad('EOF');
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw bad(`json: cannot unmarshal ${jsonType(body)} into Go value of type ${struct}`);
  return body as Json;
}

function optionalString(body: Json, struct: string, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw typeError(struct, field, value, 'string');
  return value;
}

function requiredString(body: Json, struct: string, field: string, missing: string): string {
  const value = optionalString(body, struct, field)?.trim();
  if (!value) throw bad(missing);
  return value;
}

/** Ports arrive as strings in Evolution GO; a number is accepted too. */
function portOf(body: Json, struct: string, missing: string): number {
  const value = body['port'];
  if (value === undefined || value === null || value === '') throw bad(missing);
  if (typeof value !== 'string' && typeof value !== 'number')
    throw typeError(struct, 'port', value, 'string');
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad('port: expected 1 to 65535');
  return port;
}

/**
 * A sink switch: `"enabled"`, `"disabled"`, booleans and `"true"`/`"false"`. `""` and `null` mean "keep
 * what is stored" (Evolution GO 0.7).
 */
export function flagOf(value: unknown, field: string): boolean | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase();
    if (v === 'enabled' || v === 'true') return true;
    if (v === 'disabled' || v === 'false') return false;
  }
  throw bad(`${field}: expected "enabled", "disabled" or ""`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export interface ProxyRequest {
  readonly host: string;
  readonly port: number;
  readonly protocol: ProxyProtocol;
  readonly username?: string;
  readonly password?: string;
}

/** The proxy of POST /instance/create and POST /instance/proxy/:id (Evolution GO 0.7: `protocol`). */
export function proxyOf(value: unknown, prefix: '' | 'proxy '): ProxyRequest {
  const body = objectBody(value, 'ProxyConfig');
  const host = requiredString(body, 'ProxyConfig', 'host', `${prefix}host is required`);
  const port = portOf(body, 'ProxyConfig', `${prefix}port is required`);
  const protocolText = optionalString(body, 'ProxyConfig', 'protocol')?.trim().toLowerCase();
  let protocol: ProxyProtocol;
  if (!protocolText) protocol = inferProtocol(port);
  else if (protocolText === 'socks5' || protocolText === 'socks') protocol = 'socks5';
  else if (protocolText === 'http' || protocolText === 'https') protocol = protocolText;
  else throw bad('protocol: expected http, https or socks5');
  const username = optionalString(body, 'ProxyConfig', 'username');
  const password = optionalString(body, 'ProxyConfig', 'password');
  return {
    host,
    port,
    protocol,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
  };
}

/** Evolution GO 0.7 guesses SOCKS5 from the port when no protocol is given. */
function inferProtocol(port: number): ProxyProtocol {
  return port === 1080 || port === 2080 || (port >= 42000 && port <= 43000) ? 'socks5' : 'http';
}

const SETTING_FIELDS = [
  'alwaysOnline',
  'rejectCall',
  'readMessages',
  'ignoreGroups',
  'ignoreStatus',
] as const;

/**
 * Advanced settings as a patch: omitted and `null` fields keep the stored value (0.7). Unknown fields are
 * ignored, a wrong type is a 400.
 */
export function advancedSettingsPatch(value: unknown): Partial<AdvancedSettings> {
  const body = objectBody(value, 'AdvancedSettings');
  const patch: { -readonly [K in keyof AdvancedSettings]?: AdvancedSettings[K] } = {};
  for (const field of SETTING_FIELDS) {
    const v = body[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'boolean') throw typeError('AdvancedSettings', field, v, 'bool');
    patch[field] = v;
  }
  const message = optionalString(body, 'AdvancedSettings', 'msgRejectCall');
  if (message !== undefined) {
    if (message.length > 4096) throw bad('msgRejectCall: at most 4096 characters');
    patch.msgRejectCall = message;
  }
  return patch;
}

export interface CreateRequest {
  readonly instanceId?: string;
  readonly name: string;
  readonly token: string;
  readonly proxy?: ProxyRequest;
  readonly advancedSettings?: Partial<AdvancedSettings>;
}

/** POST /instance/create. Any non-empty name and token; `instanceId` (a UUID) becomes the id. */
export function createRequest(value: unknown): CreateRequest {
  const body = objectBody(value, 'CreateStruct');
  const name = requiredString(body, 'CreateStruct', 'name', 'name is required');
  const token = requiredString(body, 'CreateStruct', 'token', 'token is required');
  if (name.length > 128) throw bad('name: at most 128 characters');
  if (token.length > 256) throw bad('token: at most 256 characters');
  const instanceId = optionalString(body, 'CreateStruct', 'instanceId')?.trim();
  if (instanceId && !isUuid(instanceId)) throw bad(`invalid UUID format: ${instanceId}`);
  const proxy = body['proxy'];
  const hasProxy =
    proxy !== undefined &&
    proxy !== null &&
    !(typeof proxy === 'object' && !Array.isArray(proxy) && Object.values(proxy).every((v) => !v));
  const settings = body['advancedSettings'];
  return {
    ...(instanceId ? { instanceId: instanceId.toLowerCase() } : {}),
    name,
    token,
    ...(hasProxy ? { proxy: proxyOf(proxy, 'proxy ') } : {}),
    ...(settings !== undefined && settings !== null
      ? { advancedSettings: advancedSettingsPatch(settings) }
      : {}),
  };
}

/** What POST /instance/connect changes; absent fields keep the stored value. */
export interface ConnectRequest {
  readonly webhookUrl?: string;
  readonly subscribe?: string[];
  readonly rabbitmqEnable?: boolean;
  readonly websocketEnable?: boolean;
  readonly natsEnable?: boolean;
}

/**
 * POST /instance/connect, as Evolution GO 0.7 reads it: empty values keep the stored ones, unknown event
 * names are dropped while a known one remains (a list of none is a 400), `"ALL"` subscribes to
 * everything.
 */
export function connectRequest(value: unknown): ConnectRequest {
  const body = objectBody(value, 'ConnectStruct');
  const out: { -readonly [K in keyof ConnectRequest]?: ConnectRequest[K] } = {};
  const webhookUrl = optionalString(body, 'ConnectStruct', 'webhookUrl')?.trim();
  if (webhookUrl) {
    if (!/^https?:\/\/\S+$/i.test(webhookUrl) || webhookUrl.length > 2048)
      throw bad('invalid webhookUrl: expected an http(s) URL');
    out.webhookUrl = webhookUrl;
  }
  const subscribe = body['subscribe'];
  if (subscribe !== undefined && subscribe !== null) {
    const names =
      typeof subscribe === 'string'
        ? subscribe.split(',')
        : Array.isArray(subscribe) && subscribe.every((n) => typeof n === 'string')
          ? (subscribe as string[])
          : undefined;
    if (!names) throw typeError('ConnectStruct', 'subscribe', subscribe, '[]string');
    const upper = names.map((n) => n.trim().toUpperCase()).filter(Boolean);
    const known = upper.filter((n) => n === 'ALL' || isEvolutionEventName(n));
    if (upper.length > 0 && known.length === 0)
      throw bad('invalid connect settings: subscribe must contain a valid event or ALL');
    if (known.length > 0) {
      const events = known.includes('ALL')
        ? ['ALL']
        : sinkEventsOf(known.filter(isEvolutionEventName) as EvolutionEventName[]);
      // Only kinds zapwire never produces (HISTORY_SYNC, NEWSLETTER): nothing to subscribe to, keep.
      if (events.length > 0) out.subscribe = events;
    }
  }
  for (const field of ['rabbitmqEnable', 'websocketEnable', 'natsEnable'] as const) {
    const flag = flagOf(body[field], field);
    if (flag !== undefined) out[field] = flag;
  }
  return out;
}

/** POST /instance/pair: any non-empty phone; zapwire keeps its digits. */
export function pairRequest(value: unknown): { phone: string } {
  const body = objectBody(value, 'PairStruct');
  return { phone: requiredString(body, 'PairStruct', 'phone', 'phone is required') };
}

/** POST /instance/forcereconnect/:id */
export function forceReconnectRequest(value: unknown): { number: string } {
  const body = objectBody(value, 'ForceReconnectStruct');
  return { number: requiredString(body, 'ForceReconnectStruct', 'number', 'number is required') };
}

export interface SendTextRequest {
  readonly number: string;
  readonly text: string;
  readonly id?: string;
  readonly delayMs: number;
  readonly mentionedJid: string[];
  readonly mentionAll: boolean;
  readonly quoted?: { readonly messageId: string; readonly participant?: string };
}

/** The longest `delay` honoured: a request should not hold a connection for longer. */
export const MAX_SEND_DELAY_MS = 60_000;

/** POST /send/text */
export function sendTextRequest(value: unknown): SendTextRequest {
  const body = objectBody(value, 'TextStruct');
  const number = requiredString(body, 'TextStruct', 'number', 'phone number is required');
  const text = optionalString(body, 'TextStruct', 'text');
  if (!text) throw bad('message body is required');
  if (text.length > 65536) throw bad('text: at most 65536 characters');
  const delay = body['delay'];
  if (delay !== undefined && delay !== null && typeof delay !== 'number')
    throw typeError('TextStruct', 'delay', delay, 'int32');
  const delayMs = typeof delay === 'number' ? Math.trunc(delay) : 0;
  if (delayMs < 0 || delayMs > MAX_SEND_DELAY_MS) throw bad(`delay: expected 0 to ${MAX_SEND_DELAY_MS} ms`);
  const mentioned = body['mentionedJid'];
  let mentionedJid: string[] = [];
  if (typeof mentioned === 'string') mentionedJid = mentioned ? [mentioned] : [];
  else if (Array.isArray(mentioned) && mentioned.every((m) => typeof m === 'string'))
    mentionedJid = (mentioned as string[]).filter(Boolean);
  else if (mentioned !== undefined && mentioned !== null)
    throw typeError('TextStruct', 'mentionedJid', mentioned, '[]string');
  const mentionAll = body['mentionAll'];
  if (mentionAll !== undefined && mentionAll !== null && typeof mentionAll !== 'boolean')
    throw typeError('TextStruct', 'mentionAll', mentionAll, 'bool');
  const id = optionalString(body, 'TextStruct', 'id')?.trim();
  const quotedValue = body['quoted'];
  let quoted: SendTextRequest['quoted'];
  if (quotedValue !== undefined && quotedValue !== null) {
    const q = objectBody(quotedValue, 'QuotedStruct');
    const messageId = optionalString(q, 'QuotedStruct', 'messageId')?.trim();
    const participant = optionalString(q, 'QuotedStruct', 'participant')?.trim();
    if (messageId) quoted = { messageId, ...(participant ? { participant } : {}) };
  }
  return {
    number,
    text,
    ...(id ? { id } : {}),
    delayMs,
    mentionedJid,
    mentionAll: mentionAll === true,
    ...(quoted ? { quoted } : {}),
  };
}

const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export interface LogsRequest {
  /** ISO instants: [since, until). */
  readonly since: string;
  readonly until: string;
  /** Lower-case levels, an exact set; undefined for every level. */
  readonly levels?: string[];
  readonly limit: number;
}

function dayStart(date: string, field: string): Date {
  const at = new Date(`${date}T00:00:00.000Z`);
  if (!DATE.test(date) || Number.isNaN(at.getTime())) throw bad(`${field}: expected YYYY-MM-DD`);
  return at;
}

const DAY_MS = 86_400_000;

/**
 * GET /instance/logs/:id. `start_date` and `end_date` are whole UTC days (both included; the last 7
 * days by default), `level` an exact set of levels in any case, `limit` 100 by default.
 */
export function logsRequest(query: Readonly<Record<string, unknown>>, now: Date): LogsRequest {
  const text = (field: string): string | undefined => {
    const value = query[field];
    return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
  };
  const today = now.toISOString().slice(0, 10);
  const end = dayStart(text('end_date') ?? today, 'end_date');
  const startText = text('start_date');
  const start = startText ? dayStart(startText, 'start_date') : new Date(end.getTime() - 7 * DAY_MS);
  if (start > end) throw bad('start_date: must not be after end_date');
  const levelText = text('level');
  let levels: string[] | undefined;
  if (levelText) {
    levels = [];
    for (const raw of levelText.split(',')) {
      const level = raw.trim().toUpperCase();
      if (!level) continue;
      if (!(LOG_LEVELS as readonly string[]).includes(level))
        throw bad(`nível de log inválido: ${raw.trim()}`);
      levels.push(level.toLowerCase());
    }
  }
  const limitText = text('limit');
  const limit = limitText === undefined ? 100 : Number(limitText);
  if (!/^\d{1,4}$/.test(limitText ?? '100') || limit < 1 || limit > 1000)
    throw bad('limit: expected 1 to 1000');
  return {
    since: start.toISOString(),
    until: new Date(end.getTime() + DAY_MS).toISOString(),
    ...(levels && levels.length > 0 ? { levels } : {}),
    limit,
  };
}
