/**
 * How far a broker sink (RabbitMQ, NATS) is behind for one instance: the instance's events that the sink
 * will carry and has not passed yet, and since when the oldest of them waits. The brokers are one
 * subscription for every instance, so their checkpoint alone cannot say which instances a stall hurts; the
 * health monitor needs it per instance ("rabbitmq 1,200 events behind, oldest 3 min").
 *
 * - What an instance wants of the sink is learned from the batches the sink handles (its settings as of
 *   each event). An instance the sink has not carried anything for yet is not tracked.
 * - The instance's appends in this process are noted with their position; the ones at or before the
 *   subscription's position are passed. Appends in other processes are not seen: the owner of an instance
 *   appends its events, and that is where its health is judged.
 * - Only while this process runs the subscription (its lease): elsewhere the position here is stale.
 * - Bounded: past MAX_NOTED waiting events per instance the rest are counted, not kept.
 */
import type { Checkpoint, RecordedEvent, Subscription } from '../store/port.ts';
import type { InstanceSinkState } from './config-timeline.ts';
import { routeOf, wants } from './routing.ts';
import type { RoutedEvent } from './subscription.ts';

const MAX_NOTED = 10_000;

export interface SinkLag {
  readonly sink: 'webhook' | 'rabbitmq' | 'nats';
  readonly behind: number;
  readonly oldestUndeliveredAt: Date | undefined;
  /** Why it does not move, when the sink knows (the broker's error while paused). */
  readonly why: string | null;
}

interface Waiting {
  /** Appended events not passed yet, in append order. */
  readonly noted: Array<{ readonly position: Checkpoint; readonly at: number }>;
  /** Appended past MAX_NOTED: how many, since when, and the newest's position. */
  overflow: { count: number; since: number; newest: Checkpoint } | undefined;
}

export class BrokerLag {
  private subscription: Subscription | undefined;
  private active = false;
  private pausedWhy: string | null = null;
  private readonly settings = new Map<string, InstanceSinkState['sinks']>();
  private readonly waiting = new Map<string, Waiting>();

  constructor(
    readonly sink: 'rabbitmq' | 'nats',
    private readonly compare: (a: Checkpoint, b: Checkpoint) => number,
    private readonly now: () => number = Date.now,
  ) {}

  attach(subscription: Subscription): void {
    this.subscription = subscription;
  }

  /** This process started or stopped running the subscription. */
  activeChanged(active: boolean): void {
    this.active = active;
  }

  /** The sink paused on an outage (why), or took messages again (null). */
  pauseChanged(why: string | null): void {
    this.pausedWhy = why;
  }

  /** The sink handled these events: what each instance wants of it, as of the newest. */
  learned(routed: readonly RoutedEvent[]): void {
    for (const { instance } of routed) this.settings.set(instance.id, instance.sinks);
  }

  /** An event of an instance was appended in this process. */
  appended(event: RecordedEvent): void {
    const route = routeOf(event);
    if (!route) return;
    const settings = this.settings.get(route.instanceId);
    if (!settings || !wants(settings, this.sink, route.name)) return;
    let waiting = this.waiting.get(route.instanceId);
    if (!waiting) this.waiting.set(route.instanceId, (waiting = { noted: [], overflow: undefined }));
    const at = this.now();
    if (waiting.noted.length < MAX_NOTED && !waiting.overflow)
      waiting.noted.push({ position: event.position, at });
    else if (waiting.overflow) {
      waiting.overflow.count++;
      waiting.overflow.newest = event.position;
    } else waiting.overflow = { count: 1, since: at, newest: event.position };
  }

  /** The instance's lag on this sink; undefined when nothing waits or the sink does not run here. */
  lagOf(instanceId: string): SinkLag | undefined {
    const waiting = this.waiting.get(instanceId);
    if (!waiting || !this.active || !this.subscription) return undefined;
    const passed = this.subscription.position();
    const stillWaiting = waiting.noted.findIndex((note) => this.compare(note.position, passed) > 0);
    waiting.noted.splice(0, stillWaiting === -1 ? waiting.noted.length : stillWaiting);
    if (waiting.noted.length === 0 && waiting.overflow && this.compare(waiting.overflow.newest, passed) <= 0)
      waiting.overflow = undefined;
    const oldest = waiting.noted[0]?.at ?? waiting.overflow?.since;
    if (oldest === undefined) {
      this.waiting.delete(instanceId);
      return undefined;
    }
    return {
      sink: this.sink,
      behind: waiting.noted.length + (waiting.overflow?.count ?? 0),
      oldestUndeliveredAt: new Date(oldest),
      why: this.pausedWhy,
    };
  }

  forget(instanceId: string): void {
    this.settings.delete(instanceId);
    this.waiting.delete(instanceId);
  }
}
