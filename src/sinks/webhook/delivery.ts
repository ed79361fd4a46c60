/**
 * A webhook delivery: one event of the log for one target (the instance's webhook, or WEBHOOK_GLOBAL_URL),
 * with the body the profile renders for it. Built the same way whether the log's reader hands the event
 * over or a queue reads its backlog from the log, so a replay sends the same bytes.
 */
import { isSubscribed, type SinkEventName } from '../../domain/event-names.ts';
import type { Checkpoint, RecordedEvent } from '../../store/port.ts';
import type { InstanceSinkState } from '../config-timeline.ts';
import type { PayloadRenderer } from '../payload.ts';
import { wants } from '../routing.ts';
import type { DeliveryTarget } from './queue-store.ts';

export interface Delivery {
  readonly instanceId: string;
  readonly instanceName: string;
  readonly target: DeliveryTarget;
  readonly url: string;
  readonly eventId: string;
  readonly eventName: SinkEventName;
  readonly eventType: string;
  readonly stream: string;
  readonly streamPosition: number;
  readonly position: Checkpoint;
  readonly storedAt: Date;
  readonly body: string;
}

export interface DeliveryRules {
  readonly payload: PayloadRenderer;
  /** WEBHOOK_GLOBAL_URL */
  readonly globalUrl: string | undefined;
  /**
   * The instance's webhook URL in force now, when it has one. An event goes to the URL in force when it
   * happened, unless it is still waiting when the URL changes (a receiver down, a backlog): then it goes to
   * the new one, so fixing a dead URL delivers the backlog there.
   */
  readonly currentUrl?: (instanceId: string) => string | null | undefined;
}

/** The URL a delivery of the instance's own webhook goes to now. */
export function instanceUrl(rules: DeliveryRules, instance: InstanceSinkState): string | undefined {
  return rules.currentUrl?.(instance.id) || instance.sinks.webhookUrl || undefined;
}

/**
 * The event's deliveries, per target, by the instance's configuration as of the event (`instance`), or
 * none. `only` restricts them to the targets it accepts (a queue reading its own backlog; the reader
 * leaves out queues that read their own): the body is rendered only when one remains.
 */
export async function deliveriesOf(
  rules: DeliveryRules,
  event: RecordedEvent,
  name: SinkEventName,
  instance: InstanceSinkState,
  only: (target: DeliveryTarget) => boolean = () => true,
): Promise<Delivery[]> {
  const targets: Array<[DeliveryTarget, string]> = [];
  if (wants(instance.sinks, 'webhook', name) && only('instance')) {
    const url = instanceUrl(rules, instance);
    if (url) targets.push(['instance', url]);
  }
  if (rules.globalUrl && isSubscribed(instance.sinks.events, name) && only('global')) {
    targets.push(['global', rules.globalUrl]);
  }
  if (targets.length === 0) return [];
  const body = await rules.payload.render(event, instance, name);
  if (body === undefined) return [];
  return targets.map(([target, url]) => ({
    instanceId: instance.id,
    instanceName: instance.name,
    target,
    url,
    eventId: event.id,
    eventName: name,
    eventType: event.type,
    stream: event.stream,
    streamPosition: event.streamPosition,
    position: event.position,
    storedAt: event.createdAt,
    body,
  }));
}

/** The stored event as far as a dead letter needs it. */
export function recordedEventOf(delivery: Delivery): RecordedEvent {
  return {
    id: delivery.eventId,
    stream: delivery.stream,
    streamPosition: delivery.streamPosition,
    position: delivery.position,
    type: delivery.eventType,
    data: {},
    metadata: {},
    createdAt: delivery.storedAt,
  };
}
