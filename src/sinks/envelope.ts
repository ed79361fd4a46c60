/**
 * The one body every sink sends: `{id, event, instance: {id, name}, timestamp, position,
 * data}`. Built here and nowhere else, so webhook, RabbitMQ, NATS and WebSocket consumers see the same bytes.
 */
import { CANONICAL_EVENT_NAMES, type SinkEventName } from '../domain/event-names.ts';
import type { RecordedEvent } from '../store/port.ts';

export interface EnvelopeInstance {
  readonly id: string;
  readonly name: string;
}

export interface SinkEnvelope {
  /** The domain event id: the idempotency key consumers deduplicate by. */
  readonly id: string;
  readonly event: SinkEventName;
  readonly instance: EnvelopeInstance;
  /** When the event was stored (ISO 8601, UTC). */
  readonly timestamp: string;
  /** The store position: pass it as `?from=` on /ws to resume after this event. */
  readonly position: string;
  readonly data: Readonly<Record<string, unknown>>;
}

/** The API state a CONNECTION_UPDATE leads to; consumers need it and the domain type is not in the envelope. */
function connectionState(domainType: string, data: Readonly<Record<string, unknown>>): string | undefined {
  switch (domainType) {
    case 'ConnectionStarting':
      return 'connecting';
    case 'InstanceOpened':
      return 'open';
    case 'ConnectionClosed':
      return data['willReconnect'] === true ? 'connecting' : 'disconnected';
    case 'SessionRemoved':
      return 'disconnected';
    default:
      return undefined;
  }
}

export function buildEnvelope(
  event: RecordedEvent,
  instance: EnvelopeInstance,
  name: SinkEventName,
): SinkEnvelope {
  const state = name === 'CONNECTION_UPDATE' ? connectionState(event.type, event.data) : undefined;
  return {
    id: event.id,
    event: name,
    instance: { id: instance.id, name: instance.name },
    timestamp: event.createdAt.toISOString(),
    position: event.position,
    data: state === undefined ? event.data : { ...event.data, state },
  };
}

export function serializeEnvelope(envelope: SinkEnvelope): string {
  return JSON.stringify(envelope);
}

/** JSON Schema (draft 2020-12 compatible subset) of the envelope; tests validate every sink against it. */
export const SINK_ENVELOPE_SCHEMA = {
  $id: 'https://zapwire.local/schemas/sink-envelope.json',
  title: 'zapwire sink envelope',
  description:
    'Every webhook body, RabbitMQ message, NATS payload and WebSocket frame. Deduplicate by `id`; resume by `position`.',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'event', 'instance', 'timestamp', 'position', 'data'],
  properties: {
    id: { type: 'string', minLength: 1, description: 'domain event id (idempotency key)' },
    event: { type: 'string', enum: [...CANONICAL_EVENT_NAMES] },
    instance: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'name'],
      properties: { id: { type: 'string', minLength: 1 }, name: { type: 'string', minLength: 1 } },
    },
    timestamp: { type: 'string', format: 'date-time' },
    position: { type: 'string', minLength: 1, description: 'opaque store position, totally ordered' },
    data: { type: 'object', description: 'the event payload; CONNECTION_UPDATE adds `state`' },
  },
} as const;
