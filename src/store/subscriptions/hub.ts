/**
 * Subscriptions, shared by every adapter: catch-up then live, one consumer at a time per name (a lease in
 * es_subscriptions), at-least-once (the checkpoint moves only after the handler's promise resolves), retries
 * with onError, optional dead letters. The adapter supplies only a gap-safe `readAll` and `headPosition`;
 * the hub is woken by the adapter (in-process append signal, NOTIFY, a KurrentDB live subscription) and
 * polls as a fallback.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import {
  START,
  type BatchHandler,
  type Checkpoint,
  type DeadLetter,
  type ReadAllOptions,
  type ReadAllResult,
  type RecordedEvent,
  type Subscription,
  type SubscriptionOptions,
} from '../port.ts';
import { compareCheckpoints } from '../checkpoint.ts';
import { SubscriptionTables } from './tables.ts';
import type { SqlExecutor } from '../sql.ts';

export interface SubscriptionSource {
  readAll(options: ReadAllOptions): Promise<ReadAllResult>;
  headPosition(): Promise<Checkpoint>;
}

const MIN_BACKOFF_MS = 5;

const DEFAULTS = {
  batchSize: 100,
  pollIntervalMs: 500,
  leaseMs: 30_000,
  retryDelayMs: 1_000,
};

/** A sleep that a wake-up ends early; a wake-up that arrives while awake is remembered, never lost. */
class Alarm {
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

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

interface Waiter {
  readonly position: Checkpoint;
  readonly resolve: (reached: boolean) => void;
}

class RunningSubscription implements Subscription {
  readonly caughtUp: Promise<void>;
  private resolveCaughtUp!: () => void;
  private checkpoint: Checkpoint = START;
  /** The newest position an append signal announced; it may not be visible yet (see consume). */
  private announced: Checkpoint = START;
  private stopped = false;
  private leaseLost = false;
  private readonly alarm = new Alarm();
  private waiters: Waiter[] = [];
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
    this.owner = `${hub.ownerId}/${randomBytes(4).toString('hex')}`;
    this.caughtUp = new Promise((resolve) => (this.resolveCaughtUp = resolve));
    this.done = this.run();
  }

  position(): Checkpoint {
    return this.checkpoint;
  }

  /** New events may be visible; `position`, when known, is the newest one announced. */
  wake(position?: Checkpoint): void {
    if (position !== undefined && compareCheckpoints(position, this.announced) > 0) this.announced = position;
    this.alarm.wake();
  }

  waitFor(position: Checkpoint, timeoutMs = 10_000): Promise<boolean> {
    if (compareCheckpoints(this.checkpoint, position) >= 0) return Promise.resolve(true);
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

  async stop(): Promise<void> {
    this.stopped = true;
    this.alarm.wake();
    await this.done;
    for (const waiter of [...this.waiters])
      waiter.resolve(compareCheckpoints(this.checkpoint, waiter.position) >= 0);
  }

  private report(error: unknown): void {
    try {
      this.options.onError?.(error);
    } catch {
      // a failing error callback must not stop the subscription
    }
  }

  private setCheckpoint(checkpoint: Checkpoint): void {
    this.checkpoint = checkpoint;
    for (const waiter of [...this.waiters]) {
      if (compareCheckpoints(checkpoint, waiter.position) >= 0) waiter.resolve(true);
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
            // Someone else runs it: wait for their lease to end (a local stop() rings us at once).
            await this.alarm.sleep(Math.min(this.options.pollIntervalMs, this.options.leaseMs / 2));
            continue;
          }
          this.setCheckpoint(claimed);
          this.leaseLost = false;
          await this.consumeWhileLeased();
        } catch (error) {
          this.report(error);
          if (!this.stopped) await this.alarm.sleep(this.options.retryDelayMs);
        }
      }
    } finally {
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
              this.alarm.wake();
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
    const { tables, source } = this.hub;
    const { batchSize, filter, maxAttempts, retryDelayMs, pollIntervalMs, leaseMs } = this.options;
    /** While set, events up to this position are handled one at a time (to single out a failing one). */
    let isolateUntil: Checkpoint | undefined;
    let failures = 0;
    let backoffMs = MIN_BACKOFF_MS;
    while (!this.stopped && !this.leaseLost) {
      const isolating = isolateUntil !== undefined && compareCheckpoints(this.checkpoint, isolateUntil) < 0;
      this.alarm.clear();
      const page = await source.readAll({ after: this.checkpoint, limit: isolating ? 1 : batchSize, filter });
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
            if (!this.stopped) await this.alarm.sleep(retryDelayMs);
            continue;
          }
          const [only] = page.events;
          if (page.events.length > 1 || !only) {
            isolateUntil = page.events.at(-1)?.position;
            failures = 0;
            continue;
          }
          if (failures < maxAttempts) {
            if (!this.stopped) await this.alarm.sleep(retryDelayMs);
            continue;
          }
          // Given up on: park it and move past it (page.next is its position, or the head when caught up).
          await tables.addDeadLetter(this.name, only, describe(error), failures);
          failures = 0;
        }
      }
      if (next !== this.checkpoint) {
        if (!(await tables.advance(this.name, this.owner, this.checkpoint, next, leaseMs))) {
          this.leaseLost = true;
          this.report(new Error(`subscription ${this.name}: lease lost; the batch may be delivered again`));
          return;
        }
        this.setCheckpoint(next);
      }
      if (page.caughtUp) {
        this.resolveCaughtUp();
        if (this.stopped || this.leaseLost) continue;
        if (compareCheckpoints(this.announced, this.checkpoint) > 0) {
          // An announced append is committed but not visible yet: an older write transaction still holds
          // the gap-safe horizon back. Look again soon rather than at the next poll.
          await this.alarm.sleep(backoffMs);
          backoffMs = Math.min(backoffMs * 2, pollIntervalMs);
        } else {
          backoffMs = MIN_BACKOFF_MS;
          await this.alarm.sleep(pollIntervalMs);
        }
      }
    }
  }
}

/** Subscriptions of one store, plus the checkpoint and dead-letter operations of the port. */
export class SubscriptionHub {
  readonly tables: SubscriptionTables;
  readonly ownerId: string;
  private readonly active = new Set<RunningSubscription>();

  constructor(
    readonly source: SubscriptionSource,
    db: SqlExecutor,
    ownerId?: string,
  ) {
    this.tables = new SubscriptionTables(db);
    this.ownerId = ownerId ?? `${hostname()}:${process.pid}`;
  }

  subscribe(name: string, options: SubscriptionOptions, handler: BatchHandler): Subscription {
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

  async stopAll(): Promise<void> {
    await Promise.all([...this.active].map((subscription) => subscription.stop()));
  }

  readCheckpoint(subscription: string): Promise<Checkpoint> {
    return this.tables.read(subscription);
  }

  resetCheckpoint(subscription: string, to: Checkpoint): Promise<void> {
    return this.tables.reset(subscription, to);
  }

  addDeadLetter(subscription: string, event: RecordedEvent, error: string, attempts: number): Promise<void> {
    return this.tables.addDeadLetter(subscription, event, error, attempts);
  }

  listDeadLetters(subscription: string): Promise<DeadLetter[]> {
    return this.tables.listDeadLetters(subscription);
  }

  removeDeadLetter(subscription: string, eventId: string): Promise<void> {
    return this.tables.removeDeadLetter(subscription, eventId);
  }
}
