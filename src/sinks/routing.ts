/**
 * Which events leave through the sinks, and the names they get on the brokers.
 */
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

/**
 * Instance names are already restricted to `[A-Za-z0-9_-]` by the API; this only guards against a name
 * that would change routing if an older or foreign event carried one (`.`, `*`, `#`, `>`, spaces).
 */
export function routingToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_') || '_';
}

/** RabbitMQ routing key `<instanceName>.<EVENT>` (bind with `myinstance.*` or `*.MESSAGE`). */
export function amqpRoutingKey(instanceName: string, name: SinkEventName): string {
  return `${routingToken(instanceName)}.${name}`;
}

/** NATS subject `<prefix>.<instanceName>.<EVENT>`. */
export function natsSubject(prefix: string, instanceName: string, name: SinkEventName): string {
  return `${prefix}.${routingToken(instanceName)}.${name}`;
}
