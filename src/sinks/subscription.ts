/**
 * Runs one sink as a store subscription with its own checkpoint: each batch is resolved against the
 * configuration as of each event (config-timeline.ts), handed to the sink, and the checkpoint moves only
 * when the sink's promise resolves (at-least-once). A throwing sink gets the same batch again, judged by the
 * same configuration.
 */
import type { Logger } from 'pino';
import type { SinkEventName } from '../domain/event-names.ts';
import type { EventStore, RecordedEvent, Subscription, SubscriptionOptions } from '../store/port.ts';
import type { ConfigTimeline, InstanceSinkState } from './config-timeline.ts';
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
  // The handler reads the subscription's position, and the subscription needs the handler first.
  const self: { subscription?: Subscription } = {};

  const handler = async (batch: readonly RecordedEvent[]): Promise<void> => {
    const first = batch[0];
    if (!first) return;
    timeline.begin();
    try {
      const lower = self.subscription?.position();
      const contiguous =
        lower !== undefined &&
        store.compareCheckpoints(lower, first.position) < 0 &&
        store.compareCheckpoints(timeline.position(), lower) >= 0;
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
      // only this poll finds it then. One indexed read per interval per sink.
      pollIntervalMs: 250,
      retryDelayMs: 1_000,
      onError: (error) =>
        logger.warn({ err: error, subscription: options.name }, 'sink batch failed; retrying'),
      ...options.subscription,
    },
    handler,
  );
  self.subscription = subscription;
  return subscription;
}
