/**
 * Runs one sink as a store subscription with its own checkpoint: each batch is resolved against the
 * configuration as of each event (config-timeline.ts), handed to the sink, and the checkpoint moves only
 * when the sink's promise resolves (at-least-once). A throwing sink gets the same batch again, judged by the
 * same configuration.
 */
import type { Logger } from 'pino';
import type { SinkEventName } from '../domain/event-names.ts';
import type {
  BatchRange,
  EventLog,
  EventStore,
  RecordedEvent,
  Subscription,
  SubscriptionOptions,
} from '../store/port.ts';
import { ConfigTimeline, type InstanceSinkState } from './config-timeline.ts';
import { SINK_EVENT_FILTER, routeOf } from './routing.ts';

export interface RoutedEvent {
  readonly event: RecordedEvent;
  readonly name: SinkEventName;
  /** The instance's name and sink settings as of this event. */
  readonly instance: InstanceSinkState;
}

export interface SinkSubscriptionOptions {
  readonly store: EventStore;
  /** Subscription (and checkpoint) name, e.g. `sink-webhook`. */
  readonly name: string;
  readonly timeline: ConfigTimeline;
  readonly logger: Logger;
  readonly subscription?: Partial<SubscriptionOptions>;
  /** Receives the deliverable events of a batch in log order, plus the raw batch. */
  readonly handle: (routed: readonly RoutedEvent[], batch: readonly RecordedEvent[]) => Promise<void>;
}

export function startSinkSubscription(options: SinkSubscriptionOptions): Subscription {
  const { store, timeline, logger, handle } = options;

  const handler = async (batch: readonly RecordedEvent[], range: BatchRange): Promise<void> => {
    const first = batch[0];
    if (!first) return;
    timeline.begin();
    try {
      // The fold has every configuration event up to the batch's start: no read needed.
      const contiguous = store.compareCheckpoints(timeline.position(), range.from) >= 0;
      if (!contiguous) await timeline.catchUpBefore(first.position);
      const routed: RoutedEvent[] = [];
      for (const event of batch) {
        timeline.apply(event);
        const route = routeOf(event);
        if (!route) continue;
        const instance = await timeline.get(route.instanceId);
        if (instance) routed.push({ event, name: route.name, instance });
      }
      await handle(routed, batch);
      // The batch held every instance-stream event up to range.to, configuration events included.
      timeline.passedThrough(range.to);
      timeline.commit();
    } catch (error) {
      timeline.rollback();
      throw error;
    }
  };

  const subscription = store.subscribe(
    options.name,
    {
      filter: SINK_EVENT_FILTER,
      batchSize: 256,
      startAt: 'end',
      // Short: an event can become visible without an append signal (an older transaction ending), and
      // only a poll finds it then. The shared reader polls at the shortest interval of its processors.
      pollIntervalMs: 250,
      retryDelayMs: 1_000,
      onError: (error) =>
        logger.warn({ err: error, subscription: options.name }, 'sink batch failed; retrying'),
      ...options.subscription,
    },
    handler,
  );
  return subscription;
}

/**
 * One event as a sink saw it: routed, with its instance's configuration as of the event (folded from the
 * instance's own stream only). undefined when no sink delivers it. For a dead letter sent again.
 */
export async function routeAsOf(
  store: Pick<EventLog, 'readAll' | 'compareCheckpoints'>,
  event: RecordedEvent,
): Promise<RoutedEvent | undefined> {
  const route = routeOf(event);
  if (!route) return undefined;
  const timeline = new ConfigTimeline(store, undefined, undefined, route.instanceId);
  await timeline.catchUpBefore(event.position);
  timeline.apply(event);
  const instance = await timeline.get(route.instanceId);
  return instance ? { event, name: route.name, instance } : undefined;
}
