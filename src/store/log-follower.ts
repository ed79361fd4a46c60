/**
 * One way to follow the log: the consumer runtime's shared reader and each processor's own reads when it is
 * behind (consumers/runtime.ts), and the WebSocket sink's replays (sinks/websocket/hub.ts).
 *
 * A follower is a cursor over `readAll`: it reads the next page after its position (with its filter and
 * batch size), the caller handles the page and then moves the position with `advance` (at-least-once: the
 * caller decides when a page counts as done). Between pages it sleeps until the log announces new events
 * (`onAppended` in this process, or `onNewEvents`, which also covers other processes when the adapter can
 * tell) or until the poll interval ends, the fallback for everything else (only a safety net on a log no
 * other process appends to: SAFETY_NET_POLL_MS).
 *
 * Gap-safe: `readAll` never returns an event that a still-running older transaction could precede, so an
 * announced append may not be visible yet. While the follower knows of a position past its own (announced,
 * or one a caller waits for), it looks again after a short, doubling delay instead of a whole poll interval.
 */
import {
  START,
  type AppendResult,
  type Checkpoint,
  type EventFilter,
  type EventLog,
  type ReadAllResult,
} from './port.ts';
import { eventMatches } from './filter.ts';

export { eventMatches } from './filter.ts';

/** The first retry delay while an announced position is not visible yet. */
const MIN_BACKOFF_MS = 5;

/**
 * A poll interval spread by ±20 %. Followers started together with one interval would otherwise poll in the
 * same tick forever, each on a connection of its own: on the embedded PostgreSQL every connection is a
 * process of ~18 MB, opened again and again as the pool's idle timeout closes it between the bursts.
 */
function jittered(ms: number): number {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

/** A sleep that a wake-up ends early; a wake-up that arrives while awake is remembered, never lost. */
export class Alarm {
  private pending = false;
  private ring: (() => void) | undefined;

  wake(): void {
    this.pending = true;
    this.ring?.();
  }

  /** Forget wake-ups that happened before the read that is about to start. */
  clear(): void {
    this.pending = false;
  }

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.ring = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.ring = done;
    });
  }
}

interface Waiter {
  readonly position: Checkpoint;
  readonly resolve: (reached: boolean) => void;
}

export interface LogFollowerOptions {
  /** Exclusive start position. Default START. */
  readonly after?: Checkpoint;
  readonly filter?: EventFilter;
  /** Events per page. */
  readonly batchSize: number;
  /** The longest sleep between reads when nothing announces new events. */
  readonly pollIntervalMs: number;
  /**
   * Which announcements wake the follower: `'appended'` = this process's appends that hold an event the
   * filter lets through; `'any'` = every announcement of the log (other processes included, when the
   * adapter can tell); `'none'` = only `wake()` and the poll interval.
   */
  readonly wakeOn?: 'appended' | 'any' | 'none';
}

/** What a follower needs of the log (the announcements only for its `wakeOn`). */
export type FollowedLog = Pick<EventLog, 'readAll' | 'compareCheckpoints'> &
  Partial<Pick<EventLog, 'onAppended' | 'onNewEvents' | 'announcesEveryAppend'>>;

/**
 * The poll interval of a log that announces every append: nothing to find between announcements, so a
 * poll is only a safety net. Idle followers then cost neither queries nor (embedded PostgreSQL) the extra
 * connections, each a process of ~18 MB, that polls landing in the same tick open.
 */
export const SAFETY_NET_POLL_MS = 10_000;

export class LogFollower {
  private checkpoint: Checkpoint;
  /** The newest position an announcement named; it may not be visible yet. */
  private announced: Checkpoint = START;
  private backoffMs = MIN_BACKOFF_MS;
  private readonly alarm = new Alarm();
  private waiters: Waiter[] = [];
  private stopped = false;
  private readonly unlisten: (() => void) | undefined;

  constructor(
    private readonly log: FollowedLog,
    private readonly options: LogFollowerOptions,
  ) {
    this.checkpoint = options.after ?? START;
    const wakeOn = options.wakeOn ?? 'none';
    if (wakeOn === 'appended' && log.onAppended) {
      this.unlisten = log.onAppended((result: AppendResult) => {
        const relevant = result.events.filter((event) => eventMatches(options.filter, event));
        if (relevant.length > 0) this.wake(relevant.at(-1)!.position);
      });
    } else if (wakeOn === 'any' && log.onNewEvents) {
      this.unlisten = log.onNewEvents((position) => this.wake(position));
    }
  }

  /** The position handled so far. */
  position(): Checkpoint {
    return this.checkpoint;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Reads the page after the position (wake-ups from before this read are used up by it). */
  read(limit = this.options.batchSize, filter = this.options.filter): Promise<ReadAllResult> {
    this.alarm.clear();
    return this.log.readAll({ after: this.checkpoint, limit, filter });
  }

  /** Moves the position (forward after a page, or anywhere on a reset) and answers the waiters it reached. */
  moveTo(position: Checkpoint): void {
    this.checkpoint = position;
    if (this.waiters.length === 0) return;
    for (const waiter of [...this.waiters]) {
      if (this.log.compareCheckpoints(position, waiter.position) >= 0) waiter.resolve(true);
    }
  }

  /** Moves the position forward only; a position at or before the current one changes nothing. */
  advance(position: Checkpoint): void {
    if (this.log.compareCheckpoints(position, this.checkpoint) > 0) this.moveTo(position);
  }

  /** New events may be visible; `position`, when known, is the newest one announced. */
  wake(position?: Checkpoint): void {
    if (position !== undefined && this.log.compareCheckpoints(position, this.announced) > 0)
      this.announced = position;
    this.alarm.wake();
  }

  /**
   * Sleeps after a caught-up read: until a wake-up or the poll interval, or only briefly (doubling) while a
   * position past the follower's is known to exist but is not visible yet.
   */
  async idle(pollIntervalMs = this.options.pollIntervalMs): Promise<void> {
    if (this.stopped) return;
    const behind =
      this.log.compareCheckpoints(this.announced, this.checkpoint) > 0 ||
      this.waiters.some((waiter) => this.log.compareCheckpoints(waiter.position, this.checkpoint) > 0);
    if (behind) {
      await this.alarm.sleep(this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, pollIntervalMs);
    } else {
      this.backoffMs = MIN_BACKOFF_MS;
      const interval = this.log.announcesEveryAppend
        ? Math.max(pollIntervalMs, SAFETY_NET_POLL_MS)
        : pollIntervalMs;
      await this.alarm.sleep(jittered(interval));
    }
  }

  /** The furthest position a waiter waits for, when past the follower's position. */
  waitingFor(): Checkpoint | undefined {
    let furthest: Checkpoint | undefined;
    for (const waiter of this.waiters) {
      if (this.log.compareCheckpoints(waiter.position, this.checkpoint) <= 0) continue;
      if (furthest === undefined || this.log.compareCheckpoints(waiter.position, furthest) > 0)
        furthest = waiter.position;
    }
    return furthest;
  }

  /** Sleeps up to `ms`; a wake-up (or stop) ends it early. */
  sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return this.alarm.sleep(ms);
  }

  /** Resolves true once the position has reached `position`, false on timeout or stop. */
  waitFor(position: Checkpoint, timeoutMs = 10_000): Promise<boolean> {
    if (this.log.compareCheckpoints(this.checkpoint, position) >= 0) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        position,
        resolve: (reached) => {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(reached);
        },
      };
      const timer = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.waiters.push(waiter);
      this.alarm.wake();
    });
  }

  /** Stops listening and ends the current sleep. Waiters are answered by `settleWaiters` (or time out). */
  stop(): void {
    this.stopped = true;
    this.unlisten?.();
    this.alarm.wake();
  }

  /** Answers every waiter now: true when the position has reached theirs, false otherwise. */
  settleWaiters(): void {
    for (const waiter of [...this.waiters])
      waiter.resolve(this.log.compareCheckpoints(this.checkpoint, waiter.position) >= 0);
  }
}
