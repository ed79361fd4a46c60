/**
 * Consumers (the `Consumers` port), implemented once for every adapter on top of its EventLog: catch-up then
 * live, one consumer at a time per name (a lease in es_subscriptions), at-least-once (the checkpoint moves
 * only after the handler's promise resolves), retries with onError, optional dead letters. The log supplies
 * a gap-safe `readAll`, `headPosition` and its `onNewEvents` announcements (in-process appends, NOTIFY, a
 * KurrentDB live subscription); each subscription follows the log with a LogFollower, which polls as a
 * fallback.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import {
  START,
  type BatchHandler,
  type Checkpoint,
  type Consumers,
  type DeadLetter,
  type DeadLetterNote,
  type DeadLetterQuery,
  type EventLog,
  type RecordedEvent,
  type Subscription,
  type SubscriptionOptions,
} from '../port.ts';
import { compareCheckpoints, decodeCheckpoint } from '../checkpoint.ts';
import { LogFollower } from '../log-follower.ts';
import { SubscriptionTables } from './tables.ts';
import type { SqlExecutor } from '../sql.ts';

/** What the hub needs of the log. */
export type SubscriptionSource = Pick<
  EventLog,
  'readAll' | 'headPosition' | 'onNewEvents' | 'compareCheckpoints'
>;

const DEFAULTS = {
  batchSize: 100,
  pollIntervalMs: 500,
  leaseMs: 30_000,
  retryDelayMs: 1_000,
};

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

class RunningSubscription implements Subscription {
  readonly caughtUp: Promise<void>;
  private resolveCaughtUp!: () => void;
  private stopped = false;
  private leaseLost = false;
  /** As last told to onActive. */
  private running = false;
  /** The follower's position is the checkpoint processed so far (also while the lease is elsewhere). */
  private readonly follower: LogFollower;
  private readonly owner: string;
  private readonly options: SubscriptionOptions & typeof DEFAULTS & { readonly startAt: 'start' | 'end' };
  private readonly done: Promise<void>;

  constructor(
    readonly name: string,
    options: SubscriptionOptions,
    private readonly handler: BatchHandler,
    private readonly hub: SubscriptionHub,
  ) {
    this.options = {
      ...options,
      batchSize: options.batchSize ?? DEFAULTS.batchSize,
      pollIntervalMs: options.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
      leaseMs: options.leaseMs ?? DEFAULTS.leaseMs,
      retryDelayMs: options.retryDelayMs ?? DEFAULTS.retryDelayMs,
      startAt: options.startAt ?? 'start',
    };
    // Woken by the hub (one onNewEvents listener for all subscriptions), so 'none' here.
    this.follower = new LogFollower(hub.source, {
      filter: options.filter,
      batchSize: this.options.batchSize,
      pollIntervalMs: this.options.pollIntervalMs,
    });
    this.owner = `${hub.ownerId}/${randomBytes(4).toString('hex')}`;
    this.caughtUp = new Promise((resolve) => (this.resolveCaughtUp = resolve));
    this.done = this.run();
  }

  position(): Checkpoint {
    return this.follower.position();
  }

  /** New events may be visible; `position`, when known, is the newest one announced. */
  wake(position?: Checkpoint): void {
    this.follower.wake(position);
  }

  waitFor(position: Checkpoint, timeoutMs = 10_000): Promise<boolean> {
    if (this.stopped && compareCheckpoints(this.follower.position(), position) < 0) {
      return Promise.resolve(false);
    }
    return this.follower.waitFor(position, timeoutMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.follower.stop();
    await this.done;
    this.follower.settleWaiters();
  }

  /** Tells onActive when this process starts or stops running the subscription (changes only). */
  private active(active: boolean): void {
    if (this.running === active) return;
    this.running = active;
    try {
      this.options.onActive?.(active);
    } catch (error) {
      this.report(error);
    }
  }

  private report(error: unknown): void {
    try {
      this.options.onError?.(error);
    } catch {
      // a failing error callback must not stop the subscription
    }
  }

  private async run(): Promise<void> {
    const { tables } = this.hub;
    try {
      while (!this.stopped) {
        try {
          if (!(await tables.exists(this.name))) {
            const initial = this.options.startAt === 'end' ? await this.hub.source.headPosition() : START;
            await tables.ensure(this.name, initial);
          }
          const claimed = await tables.claim(this.name, this.owner, this.options.leaseMs);
          if (claimed === undefined) {
            this.active(false);
            // Someone else runs it: wait for their lease to end (a local stop() rings us at once).
            await this.follower.sleep(Math.min(this.options.pollIntervalMs, this.options.leaseMs / 2));
            continue;
          }
          this.follower.moveTo(claimed);
          this.leaseLost = false;
          this.active(true);
          await this.consumeWhileLeased();
          // A failed read or write is retried under the same lease; only a lost lease ends this run.
          if (this.leaseLost) this.active(false);
        } catch (error) {
          this.report(error);
          if (!this.stopped) await this.follower.sleep(this.options.retryDelayMs);
        }
      }
    } finally {
      this.active(false);
      await tables.release(this.name, this.owner).catch(() => undefined);
      this.hub.released(this);
    }
  }

  private async consumeWhileLeased(): Promise<void> {
    const { leaseMs } = this.options;
    const renewal = setInterval(
      () => {
        this.hub.tables.renew(this.name, this.owner, leaseMs).then(
          (held) => {
            if (!held) {
              this.leaseLost = true;
              this.follower.wake();
            }
          },
          (error: unknown) => this.report(error),
        );
      },
      Math.max(10, leaseMs / 3),
    );
    try {
      await this.consume();
    } finally {
      clearInterval(renewal);
    }
  }

  private async consume(): Promise<void> {
    const { tables } = this.hub;
    const follower = this.follower;
    const { batchSize, maxAttempts, retryDelayMs, leaseMs } = this.options;
    /** While set, events up to this position are handled one at a time (to single out a failing one). */
    let isolateUntil: Checkpoint | undefined;
    let failures = 0;
    while (!this.stopped && !this.leaseLost) {
      const checkpoint = follower.position();
      const isolating = isolateUntil !== undefined && compareCheckpoints(checkpoint, isolateUntil) < 0;
      const page = await follower.read(isolating ? 1 : batchSize);
      // Asked to stop while reading: do not start a new batch (one already running is finished, though).
      if (this.stopped) return;
      const next = page.next;
      if (page.events.length > 0) {
        try {
          await this.handler(page.events);
          failures = 0;
        } catch (error) {
          failures += 1;
          this.report(error);
          await tables.recordError(this.name, this.owner, describe(error)).catch(() => undefined);
          if (maxAttempts === undefined) {
            if (!this.stopped) await follower.sleep(retryDelayMs);
            continue;
          }
          const [only] = page.events;
          if (page.events.length > 1 || !only) {
            isolateUntil = page.events.at(-1)?.position;
            failures = 0;
            continue;
          }
          if (failures < maxAttempts) {
            if (!this.stopped) await follower.sleep(retryDelayMs);
            continue;
          }
          // Given up on: park it and move past it (page.next is its position, or the head when caught up).
          await tables.addDeadLetter(this.name, only, describe(error), failures);
          failures = 0;
        }
      }
      if (next !== checkpoint) {
        if (!(await tables.advance(this.name, this.owner, checkpoint, next, leaseMs))) {
          this.leaseLost = true;
          this.report(new Error(`subscription ${this.name}: lease lost; the batch may be delivered again`));
          return;
        }
        follower.moveTo(next);
      }
      if (page.caughtUp) {
        this.resolveCaughtUp();
        if (this.stopped || this.leaseLost) continue;
        await follower.idle();
      }
    }
  }
}

/**
 * The Consumers port for one log: its subscriptions, checkpoints and dead letters (in the SQL tables of
 * `db`: beside the events on PostgreSQL, in the read-model database with KurrentDB).
 */
export class SubscriptionHub implements Consumers {
  readonly tables: SubscriptionTables;
  readonly ownerId: string;
  private readonly active = new Set<RunningSubscription>();
  private unlisten: (() => void) | undefined;
  private closed = false;

  constructor(
    readonly source: SubscriptionSource,
    db: SqlExecutor,
    ownerId?: string,
  ) {
    this.tables = new SubscriptionTables(db);
    this.ownerId = ownerId ?? `${hostname()}:${process.pid}`;
  }

  subscribe(name: string, options: SubscriptionOptions, handler: BatchHandler): Subscription {
    if (this.closed) throw new Error('the event store is closed');
    // Listen from the first subscription on (on KurrentDB this opens the live subscription to $all).
    this.unlisten ??= this.source.onNewEvents((position) => this.wake(position));
    const subscription = new RunningSubscription(name, options, handler, this);
    this.active.add(subscription);
    return subscription;
  }

  /** New events may be visible (up to `position`, when known): every running subscription reads again now. */
  wake(position?: Checkpoint): void {
    for (const subscription of this.active) subscription.wake(position);
  }

  /** A subscription ended and gave its lease back: a local one of the same name may take over at once. */
  released(subscription: RunningSubscription): void {
    this.active.delete(subscription);
    for (const other of this.active) if (other.name === subscription.name) other.wake();
  }

  /** Stops every subscription; no new one starts afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    this.unlisten?.();
    this.unlisten = undefined;
    await Promise.all([...this.active].map((subscription) => subscription.stop()));
  }

  readCheckpoint(subscription: string): Promise<Checkpoint> {
    return this.tables.read(subscription);
  }

  resetCheckpoint(subscription: string, to: Checkpoint): Promise<void> {
    if (to !== START) decodeCheckpoint(to);
    return this.tables.reset(subscription, to);
  }

  addDeadLetter(
    subscription: string,
    event: RecordedEvent,
    error: string,
    attempts: number,
    note?: DeadLetterNote,
  ): Promise<void> {
    return this.tables.addDeadLetter(subscription, event, error, attempts, note);
  }

  listDeadLetters(subscription: string): Promise<DeadLetter[]> {
    return this.tables.listDeadLetters(subscription);
  }

  findDeadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    return this.tables.findDeadLetters(query);
  }

  deadLetter(id: string): Promise<DeadLetter | undefined> {
    return this.tables.deadLetter(id);
  }

  capDeadLetters(subscriptions: readonly string[], instanceId: string, max: number): Promise<number> {
    return this.tables.capDeadLetters(subscriptions, instanceId, max);
  }

  pruneDeadLetters(subscriptions: readonly string[], failedBefore: Date): Promise<number> {
    return this.tables.pruneDeadLetters(subscriptions, failedBefore);
  }

  removeDeadLetter(subscription: string, eventId: string): Promise<void> {
    return this.tables.removeDeadLetter(subscription, eventId);
  }

  /** A deleted stream's dead letters go with it. */
  forgetStream(stream: string): Promise<void> {
    return this.tables.removeDeadLettersOfStream(stream);
  }
}
