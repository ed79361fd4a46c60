/**
 * One webhook queue (an instance's webhook, or the global webhook for one instance): a position in the log
 * and the few events it holds in memory. The log is the queue: a queue never copies events anywhere; when
 * it falls behind it reads its own events from the log again.
 *
 * Positions:
 * - `taken`: the newest position whose events the queue has taken into `window` (from the log's reader
 *   or its own reads); later events are still only in the log.
 * - `settled`: every event of the queue at or before it is delivered or dead-lettered. This is the cursor
 *   stored in zw_webhook_queues, and where a restart resumes.
 *
 * Modes:
 * - `attached`: the log's reader hands the queue its events as it reads them (the queue is at the head).
 * - `detached`: the queue reads its events from the log after `taken` (a receiver down or slow, a backlog
 *   after a restart). Its stored row says so, with its cursor, before the reader moves past anything.
 * - `attaching`: a detached queue that has settled everything and is reading the log once more to see
 *   whether it has caught up; the reader's events meanwhile wait in `holding`.
 */
import type { Checkpoint } from '../../store/port.ts';
import type { ConfigTimeline } from '../config-timeline.ts';
import type { Delivery } from './delivery.ts';
import { HEALTHY, type DeliveryTarget, type QueueHealth, type QueueRecord } from './queue-store.ts';

export type QueueMode = 'attached' | 'attaching' | 'detached';

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export class QueueItem {
  /** In a request that has not been answered yet. */
  sending = false;
  /** Delivered or dead-lettered. */
  done = false;
  /**
   * What the log's reader waits for before it moves past the event: the event is done, or its queue is
   * detached in the table (a restart then reads it from the log again).
   */
  private readonly safety = deferred();

  constructor(readonly delivery: Delivery) {}

  get safe(): Promise<void> {
    return this.safety.promise;
  }

  markSafe(): void {
    this.safety.resolve();
  }

  finish(): void {
    this.done = true;
    this.sending = false;
    this.safety.resolve();
  }
}

export class WebhookQueue {
  mode: QueueMode = 'attached';
  taken: Checkpoint;
  settled: Checkpoint;
  /** Events taken and not yet removed, in log order; done ones leave from the front. */
  window: QueueItem[] = [];
  /** The reader's events while `attaching`. */
  holding: QueueItem[] = [];
  health: QueueHealth = HEALTHY;
  /** Paused: when the receiver is probed next (epoch ms). */
  nextProbeAt = 0;
  /** The next request carries one event (a batch was refused: its events go one by one). */
  sendAlone = false;
  /** Events the reader passed while the queue was detached (an estimate of how far behind it is). */
  passed = 0;
  /** While its backlog is being counted: the positions the reader passed meanwhile (the count may hold them). */
  passedWhileCounting: Checkpoint[] | undefined;
  /** Events counted in the log after the stored cursor at start (until the queue has read that far). */
  counted: { readonly upTo: Checkpoint; readonly events: number; readonly exact: boolean } | undefined;
  /** The row's `attached` as last written; undefined while the queue has no row. */
  storedAttached: boolean | undefined;
  /** The row's cursor as last written. */
  storedCursor: Checkpoint | undefined;
  /** The queue's configuration fold, for its own reads of the log. */
  timeline: ConfigTimeline | undefined;
  worker: Promise<void> | undefined;
  /** Set when the instance was deleted: the queue does nothing more. */
  forgotten = false;
  private wakeUp: (() => void) | undefined;

  constructor(
    readonly instanceId: string,
    readonly target: DeliveryTarget,
    cursor: Checkpoint,
  ) {
    this.taken = cursor;
    this.settled = cursor;
  }

  get key(): string {
    return queueKey(this.instanceId, this.target);
  }

  /** The first event not done yet. */
  head(): QueueItem | undefined {
    return this.window.find((item) => !item.done);
  }

  unsettled(): number {
    let count = 0;
    for (const item of this.window) if (!item.done) count += 1;
    return count;
  }

  /**
   * Events sent or delivered past the stored cursor: what a crash now would send again. Done events leave
   * the window as `settled` moves, so those still in it are few (a failure ahead of them, or in flight).
   */
  sentSinceRecorded(compare: (a: Checkpoint, b: Checkpoint) => number): number {
    const stored = this.storedCursor ?? ('' as Checkpoint);
    let count = compare(this.settled, stored) > 0 ? 1 : 0;
    for (const item of this.window) {
      if ((item.done || item.sending) && compare(item.delivery.position, stored) > 0) count += 1;
    }
    return count;
  }

  /** Removes the done events at the front, moving `settled` past them. */
  compact(): void {
    let removed = 0;
    while (removed < this.window.length && this.window[removed]!.done) {
      this.settled = this.window[removed]!.delivery.position;
      removed += 1;
    }
    if (removed > 0) this.window.splice(0, removed);
    // Nothing held back: everything taken is settled (events of other targets or types lie between).
    if (this.window.length === 0) this.settled = this.taken;
  }

  record(): QueueRecord {
    return {
      instanceId: this.instanceId,
      target: this.target,
      // Attached too: a restart skips what the reader hands over at or before it, so only settled events.
      cursor: this.settled,
      attached: this.mode === 'attached',
      ...this.health,
    };
  }

  /** Sleeps until `ms` passed or `wake()` is called. */
  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.wakeUp === done) this.wakeUp = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  wake(): void {
    this.wakeUp?.();
  }
}

export const queueKey = (instanceId: string, target: DeliveryTarget): string =>
  `${target}\u0000${instanceId}`;
