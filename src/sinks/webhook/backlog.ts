/**
 * A queue's own read of the log: the events of its instance after the queue's position, with only that
 * instance's two streams read at the database (an index lookup, not a scan of every tenant's events), each
 * judged by the instance's configuration as of the event (folded from the same stream).
 */
import type { Logger } from 'pino';
import { instanceIdOfStream, instanceStream, whatsappStream } from '../../domain/events.ts';
import type { Checkpoint, EventLog } from '../../store/port.ts';
import { ConfigTimeline } from '../config-timeline.ts';
import type { SinkDirectory } from '../directory.ts';
import { routeOf } from '../routing.ts';
import { deliveriesOf, type Delivery, type DeliveryRules } from './delivery.ts';
import type { DeliveryTarget } from './queue-store.ts';

export interface BacklogPage {
  readonly deliveries: readonly Delivery[];
  /** Where the next read continues (past events of other targets and types too). */
  readonly next: Checkpoint;
  /** Nothing of the instance is visible after `next` (for now). */
  readonly caughtUp: boolean;
  /** The instance was deleted at or before `next`: the queue has nothing more to send. */
  readonly deleted: boolean;
}

export interface BacklogQueue {
  readonly instanceId: string;
  readonly target: DeliveryTarget;
  readonly taken: Checkpoint;
  timeline: ConfigTimeline | undefined;
}

export class BacklogReader {
  constructor(
    private readonly log: Pick<EventLog, 'readAll' | 'compareCheckpoints'>,
    private readonly rules: DeliveryRules,
    private readonly directory: SinkDirectory | undefined,
    private readonly logger: Logger | undefined,
  ) {}

  async read(queue: BacklogQueue, limit: number): Promise<BacklogPage> {
    const { instanceId } = queue;
    if (!queue.timeline) {
      const timeline = new ConfigTimeline(this.log, this.directory, this.logger, instanceId);
      await timeline.catchUpThrough(queue.taken);
      queue.timeline = timeline;
    }
    const timeline = queue.timeline;
    const page = await this.log.readAll({
      after: queue.taken,
      limit,
      filter: { streams: [instanceStream(instanceId), whatsappStream(instanceId)] },
    });
    const deliveries: Delivery[] = [];
    for (const event of page.events) {
      timeline.apply(event);
      if (event.type === 'InstanceDeleted' && instanceIdOfStream(event.stream) === instanceId) {
        return { deliveries, next: event.position, caughtUp: true, deleted: true };
      }
      const route = routeOf(event);
      if (!route) continue;
      const instance = await timeline.get(instanceId);
      if (!instance) continue;
      deliveries.push(
        ...(await deliveriesOf(this.rules, event, route.name, instance, (target) => target === queue.target)),
      );
    }
    return { deliveries, next: page.next, caughtUp: page.caughtUp, deleted: false };
  }

  /**
   * How many deliveries of the queue lie after `after`, counting at most `max` (reading pages of the log):
   * `exact` is false when there are more.
   */
  async count(
    queue: Pick<BacklogQueue, 'instanceId' | 'target'>,
    after: Checkpoint,
    max: number,
  ): Promise<{ events: number; exact: boolean; upTo: Checkpoint }> {
    const probe: BacklogQueue = { ...queue, taken: after, timeline: undefined };
    let events = 0;
    for (;;) {
      const page = await this.read(probe, 1_000);
      events += page.deliveries.length;
      (probe as { taken: Checkpoint }).taken = page.next;
      if (page.caughtUp || page.deleted) return { events, exact: true, upTo: page.next };
      if (events >= max) return { events, exact: false, upTo: page.next };
    }
  }
}
