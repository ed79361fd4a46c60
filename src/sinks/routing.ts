/**
 * Which events leave through the sinks, and the names they get on the brokers.
 */
import { createHash } from 'node:crypto';
import { sinkEventNameOf, isSubscribed, type SinkEventName } from '../domain/event-names.ts';
import {
  INSTANCE_STREAM_PREFIX,
  WHATSAPP_STREAM_PREFIX,
  instanceIdOfStream,
  type SinkSettings,
} from '../domain/events.ts';
import type { EventFilter, RecordedEvent } from '../store/port.ts';

/**
 * What every sink subscription reads: both instance streams, all types. No type filter on purpose: the
 * subscription's resume point then stays on the last event handled, so the configuration fold (see
 * config-timeline.ts) rarely needs a catch-up read between batches.
 */
export const SINK_EVENT_FILTER: EventFilter = {
  streamPrefixes: [INSTANCE_STREAM_PREFIX, WHATSAPP_STREAM_PREFIX],
};

export interface SinkRoute {
  readonly instanceId: string;
  readonly name: SinkEventName;
}

/** The instance and sink event name of a stored event; undefined when it is not delivered to sinks. */
export function routeOf(event: RecordedEvent): SinkRoute | undefined {
  const instanceId = instanceIdOfStream(event.stream);
  if (!instanceId) return undefined;
  const name = sinkEventNameOf(event.type, event.data);
  return name ? { instanceId, name } : undefined;
}

export type SinkKind = 'webhook' | 'rabbitmq' | 'nats' | 'websocket';

/** Whether an instance with these settings wants this event on this sink. */
export function wants(settings: SinkSettings, sink: SinkKind, name: SinkEventName): boolean {
  if (!isSubscribed(settings.events, name)) return false;
  switch (sink) {
    case 'webhook':
      return settings.webhookUrl !== null && settings.webhookUrl !== '';
    case 'rabbitmq':
      return settings.rabbitmqEnable;
    case 'nats':
      return settings.natsEnable;
    case 'websocket':
      return settings.websocketEnable;
  }
}

/** Longest token a name keeps in full; a longer one is shortened and made unique by a digest. */
const MAX_TOKEN_BYTES = 200;

/**
 * One word of a RabbitMQ routing key or NATS subject for an instance name, and a different word for every
 * different name (injective), so a queue bound to one tenant's key never receives another tenant's events.
 * Names are well-formed text (the API refuses unpaired surrogates: src/http/storable-text.ts), so their UTF-8
 * is too. `[A-Za-z0-9_-]` stays as it is (every name zapwire's own API accepts maps to itself); every other UTF-8
 * byte, `%` included, becomes `%XX` (upper-case hex). `.`, `*`, `#`, `>` and spaces never appear, so the
 * word cannot change how keys match. A word that would exceed 200 bytes (long non-ASCII names, which the
 * Evolution GO profile accepts up to 128 characters) keeps its first bytes and ends in `~` and 32 hex
 * digits of the name's SHA-256: `~` never appears in an unshortened word, so the two kinds never meet.
 */
export function routingToken(name: string): string {
  let token = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const char = String.fromCharCode(byte);
    token += /[A-Za-z0-9_-]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (token === '') return '%';
  if (token.length <= MAX_TOKEN_BYTES) return token;
  const digest = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 32);
  let kept = token.slice(0, MAX_TOKEN_BYTES - 33);
  // Never cut an escape in half.
  const escape = kept.lastIndexOf('%');
  if (escape > kept.length - 3) kept = kept.slice(0, escape);
  return `${kept}~${digest}`;
}

/** RabbitMQ routing key `<instanceName>.<EVENT>` (bind with `myinstance.*` or `*.MESSAGE`). */
export function amqpRoutingKey(instanceName: string, name: SinkEventName): string {
  return `${routingToken(instanceName)}.${name}`;
}

/** NATS subject `<prefix>.<instanceName>.<EVENT>`. */
export function natsSubject(prefix: string, instanceName: string, name: SinkEventName): string {
  return `${prefix}.${routingToken(instanceName)}.${name}`;
}
