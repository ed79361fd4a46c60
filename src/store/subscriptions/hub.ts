/**
 * Consumers (the `Consumers` port), implemented once for every adapter on top of its EventLog: the consumer
 * runtime (../consumers/runtime.ts) that runs every processor of the process from one shared reader of the
 * log, and named subscriptions as processors of it: catch-up then live, one consumer at a time per name (a
 * lease in es_subscriptions), at-least-once (the checkpoint moves only after the handler's promise
 * resolves), retries with onError, optional dead letters. The log supplies a gap-safe `readAll`,
 * `headPosition` and its `onNewEvents` announcements (in-process appends, NOTIFY, a KurrentDB live
 * subscription), which wake the shared reader; it polls as a fallback.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import {
  START,
  type BatchHandler,
  type BatchRange,
  type Checkpoint,
  type Consumers,
  type DeadLetter,
  type DeadLetterNote,
  type DeadLetterQuery,
  type DeadLetterRetry,
  type DeadLetterRetryResult,
  type EventLog,
  type Processor,
  type ProcessorHandle,
  type RecordedEvent,
  type Subscription,
  type SubscriptionOptions,
} from '../port.ts';
import { decodeCheckpoint, justBefore } from '../checkpoint.ts';
import { DeadLetterRetryUnavailableError, LeaseLostError } from '../errors.ts';
import { ConsumerRuntime } from '../consumers/runtime.ts';
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

export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** A named subscription: a processor with a leased, stored checkpoint and at-least-once delivery. */
class RunningSubscription implements Subscription {
  readonly caughtUp: Promise<void>;
  private readonly handle: ProcessorHandle;
  private readonly owner: string;
  private readonly options: SubscriptionOptions & typeof DEFAULTS & { readonly startAt: 'start' | 'end' };
  /** As last told to onActive. */
  private running = false;
  private renewal: NodeJS.Timeout | undefined;
  /** The checkpoint the lease came with (the processor starts there). */
  private claimed: Checkpoint = START;

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
    const { tables } = hub;
    const processor: Processor = {
      name,
      ...(options.filter ? { filter: options.filter } : {}),
      batchSize: this.options.batchSize,
      pollIntervalMs: this.options.pollIntervalMs,
      checkpoint: { load: () => Promise.resolve(this.claimed) },
      lease: {
        acquire: (lost) => this.acquire(lost),
        release: () => this.release(),
        retryMs: Math.min(this.options.pollIntervalMs, this.options.leaseMs / 2),
      },
      failure: {
        retryDelayMs: this.options.retryDelayMs,
        ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
        onError: (error) => {
          this.report(error);
          if (error instanceof LeaseLostError) return;
          void tables.recordError(name, this.owner, describeError(error)).catch(() => undefined);
        },
        giveUp: async (event, error, attempts, range) => {
          await tables.addDeadLetter(name, event, describeError(error), attempts);
          return this.advance(range);
        },
      },
      handle: async (events, range) => {
        if (events.length > 0) await this.handler(events, range);
        return this.advance(range);
      },
    };
    this.handle = hub.runtime.process(processor);
    this.caughtUp = this.handle.caughtUp;
  }

  position(): Checkpoint {
    return this.handle.position();
  }

  waitFor(position: Checkpoint, timeoutMs = 10_000): Promise<boolean> {
    return this.handle.waitFor(position, timeoutMs);
  }

  /** Another local subscription of this name gave the lease back: try to take it now. */
  wake(): void {
    this.handle.wake();
  }

  async stop(): Promise<void> {
    await this.handle.stop();
    this.hub.released(this);
  }

  /** Moves the stored checkpoint while we hold the lease; a lost lease ends this run (the batch may repeat). */
  private async advance(range: BatchRange): Promise<Checkpoint> {
    if (range.to === range.from) return range.to;
    const { leaseMs } = this.options;
    if (!(await this.hub.tables.advance(this.name, this.owner, range.from, range.to, leaseMs))) {
      this.leaseGone();
      throw new LeaseLostError(`subscription ${this.name}`);
    }
    return range.to;
  }

  private async acquire(lost: () => void): Promise<boolean> {
    const { tables } = this.hub;
    if (!(await tables.exists(this.name))) {
      const initial = this.options.startAt === 'end' ? await this.hub.source.headPosition() : START;
      await tables.ensure(this.name, initial);
    }
    const claimed = await tables.claim(this.name, this.owner, this.options.leaseMs);
    if (claimed === undefined) {
      // Someone else runs it: the runtime tries again (a local stop() wakes us at once).
      void this.active(false);
      return false;
    }
    this.claimed = claimed;
    const { leaseMs } = this.options;
    clearInterval(this.renewal);
    this.renewal = setInterval(
      () => {
        tables.renew(this.name, this.owner, leaseMs).then(
          (held) => {
            if (held || this.renewal === undefined) return;
            this.leaseGone();
            lost();
          },
          (error: unknown) => this.report(error),
        );
      },
      Math.max(10, leaseMs / 3),
    );
    void this.active(true);
    return true;
  }

  private leaseGone(): void {
    clearInterval(this.renewal);
    this.renewal = undefined;
    void this.active(false);
  }

  /** Gives the lease back, once what onActive(false) does (the webhook's queue positions) is done. */
  private async release(): Promise<void> {
    clearInterval(this.renewal);
    this.renewal = undefined;
    await this.active(false);
    await this.hub.tables.release(this.name, this.owner);
  }

  /** Tells onActive when this process starts or stops running the subscription (changes only). */
  private async active(active: boolean): Promise<void> {
    if (this.running === active) return;
    this.running = active;
    try {
      await this.options.onActive?.(active);
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
}

/**
 * The Consumers port for one log: its subscriptions, checkpoints and dead letters (in the SQL tables of
 * `db`: beside the events on PostgreSQL, in the read-model database with KurrentDB).
 */
export class SubscriptionHub implements Consumers {
  readonly tables: SubscriptionTables;
  readonly ownerId: string;
  /** The one consumer runtime of this log in this process. */
  readonly runtime: ConsumerRuntime;
  private readonly active = new Set<RunningSubscription>();
  private closed = false;

  constructor(
    readonly source: SubscriptionSource,
    db: SqlExecutor,
    ownerId?: string,
  ) {
    this.tables = new SubscriptionTables(db);
    this.ownerId = ownerId ?? `${hostname()}:${process.pid}`;
    this.runtime = new ConsumerRuntime(source);
  }

  subscribe(name: string, options: SubscriptionOptions, handler: BatchHandler): Subscription {
    if (this.closed) throw new Error('the event store is closed');
    const subscription = new RunningSubscription(name, options, handler, this);
    this.active.add(subscription);
    return subscription;
  }

  process(processor: Processor): ProcessorHandle {
    return this.runtime.process(processor);
  }

  onRetry(subscription: string, retry: DeadLetterRetry): () => void {
    return this.runtime.onRetry(subscription, retry);
  }

  async retryDeadLetter(id: string, requestedBy: string): Promise<DeadLetterRetryResult | undefined> {
    const dead = await this.tables.deadLetter(id);
    if (!dead) return undefined;
    const retry = this.runtime.retryOf(dead.subscription);
    if (!retry) throw new DeadLetterRetryUnavailableError(dead.subscription);
    const event = await this.eventOf(dead);
    if (!event) {
      return {
        outcome: 'failed',
        message: `event ${dead.eventId} is no longer in the log (its stream ${dead.stream} was deleted); remove the dead letter`,
      };
    }
    return retry(dead, event, requestedBy);
  }

  /** A dead letter's event, read from the log (the dead letter keeps no payload). */
  private async eventOf(dead: DeadLetter): Promise<RecordedEvent | undefined> {
    const page = await this.source.readAll({
      after: justBefore(dead.position),
      limit: 1,
      filter: { streams: [dead.stream] },
    });
    const event = page.events[0];
    return event?.id === dead.eventId ? event : undefined;
  }

  /** A subscription ended and gave its lease back: a local one of the same name may take over at once. */
  released(subscription: RunningSubscription): void {
    this.active.delete(subscription);
    for (const other of this.active) if (other.name === subscription.name) other.wake();
  }

  /** Stops every subscription and processor; no new one starts afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await this.runtime.close();
    this.active.clear();
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
