import type { Logger } from 'pino';
import type {
  Checkpoint,
  DeadLetterRetry,
  EventStore,
  Processor,
  ProcessorHandle,
  RecordedEvent,
} from '../src/store/port.ts';
import { START } from '../src/store/port.ts';
import { Errors } from '../src/domain/errors.ts';
import { handleUnderPolicy } from '../src/store/consumers/failure.ts';
import { SubscriptionTables } from '../src/store/subscriptions/tables.ts';
import type { SqlDatabase, SqlExecutor } from '../src/store/sql.ts';
import { projectionSubscription, type Projection } from './projection.ts';

export { projectionSubscription } from './projection.ts';
import { isTransientFailure } from './transient.ts';

const BATCH_SIZE = 500;
/** Tries of one event before it counts as poison (a deterministic failure) and is skipped. */
const POISON_ATTEMPTS = 3;
const POISON_RETRY_DELAY_MS = 100;

interface ProjectionState {
  readonly projection: Projection;
  /** `projection:<name>`. */
  readonly subscription: string;
  /** Set by start(). Its position is the projection's checkpoint as handled. */
  handle: ProcessorHandle | undefined;
  /**
   * The checkpoint in es_subscriptions, when it lags behind the handled one: batches with nothing for the
   * projection (events its filter left out) move it in memory only, and the stored one catches up with the
   * next batch that writes, or at stop. Reading those events again after a restart changes nothing.
   */
  saved: Checkpoint;
  lastError: string | undefined;
}

type RunningProjection = ProjectionState & { readonly processor: Processor };

/** Reads both sides of a rebuild at one checkpoint (see ProjectionRunner.rebuild). */
export interface RebuildCheck {
  live(projection: Projection, checkpoint: Checkpoint): Promise<void>;
  rebuilt(projection: Projection, checkpoint: Checkpoint): Promise<void>;
}

export interface ProjectionStatus {
  readonly name: string;
  readonly checkpoint: Checkpoint;
  readonly lastError: string | undefined;
}

/** An event a projection skipped because applying it failed every time (a dead letter of `projection:<name>`). */
export interface PoisonEvent {
  readonly projection: string;
  readonly position: string;
  readonly eventId: string;
  readonly stream: string;
  readonly eventType: string;
  readonly error: string;
  readonly skippedAt: Date;
}

/** What the runner needs of the store: reads for a rebuild, and the consumer runtime. */
export type ProjectionStore = Pick<EventStore, 'readAll' | 'compareCheckpoints' | 'process' | 'onRetry'>;

/**
 * Keeps the read model up to date. Each projection is a processor of the store's consumer runtime: fed by
 * the one shared reader at the head of the log, reading on its own when behind. It applies a batch and the
 * new checkpoint (its row in es_subscriptions) in ONE read-model transaction, so a crash never applies a
 * batch twice or skips one; the checkpoint update is a compare-and-set, so several nodes running the same
 * projection apply each batch once (CheckpointMoved). An event that fails POISON_ATTEMPTS times on its own
 * is skipped and recorded as a dead letter, in the same transaction as the checkpoint that passes it.
 */
export class ProjectionRunner {
  private readonly running = new Map<string, RunningProjection>();
  private readonly unregister: Array<() => void> = [];
  private stopped = false;

  constructor(
    private readonly store: ProjectionStore,
    private readonly db: SqlDatabase,
    private readonly projections: readonly Projection[],
    private readonly logger: Logger,
    private readonly pollIntervalMs = 500,
  ) {
    for (const projection of projections) {
      const state: ProjectionState = {
        projection,
        subscription: projectionSubscription(projection.name),
        handle: undefined,
        saved: START,
        lastError: undefined,
      };
      this.running.set(projection.name, Object.assign(state, { processor: this.processorOf(state) }));
    }
  }

  async start(): Promise<void> {
    // Every checkpoint row exists before any projection runs (a rebuild or a status read may come first).
    for (const state of this.running.values()) {
      state.saved = await new SubscriptionTables(this.db).ensureCheckpoint(state.subscription);
    }
    for (const state of this.running.values()) {
      state.handle = this.store.process(state.processor);
      this.unregister.push(this.store.onRetry(state.subscription, this.retryOf(state)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const unregister of this.unregister.splice(0)) unregister();
    await Promise.all([...this.running.values()].map((s) => s.handle?.stop()));
    for (const state of this.running.values()) {
      const position = state.handle?.position();
      if (position === undefined || state.saved === position) continue;
      // Only forward, and only from where this node saw it: another node may have moved on meanwhile.
      await new SubscriptionTables(this.db)
        .moveCheckpoint(state.subscription, state.saved, position)
        .catch((error: unknown) =>
          this.logger.warn({ err: error, projection: state.projection.name }, 'could not save a checkpoint'),
        );
    }
  }

  status(): ProjectionStatus[] {
    return [...this.running.values()].map((s) => ({
      name: s.projection.name,
      checkpoint: s.handle?.position() ?? s.saved,
      lastError: s.lastError,
    }));
  }

  names(): string[] {
    return this.projections.map((p) => p.name);
  }

  /** Skipped events per projection (its dead letters), for /health, /metrics and the admin. */
  async poisonCounts(): Promise<Map<string, number>> {
    const names = this.names();
    const counts = await new SubscriptionTables(this.db).countDeadLetters(names.map(projectionSubscription));
    return new Map(names.map((name) => [name, counts.get(projectionSubscription(name)) ?? 0]));
  }

  /** The events projections skipped, oldest first (at most 1 000). */
  async poisonEvents(): Promise<PoisonEvent[]> {
    const letters = await new SubscriptionTables(this.db).findDeadLetters({
      subscriptions: this.names().map(projectionSubscription),
      limit: 1_000,
    });
    return letters.reverse().map((d) => ({
      projection: d.subscription.slice('projection:'.length),
      position: d.position,
      eventId: d.eventId,
      stream: d.stream,
      eventType: d.eventType,
      error: d.error,
      skippedAt: d.failedAt,
    }));
  }

  /** Resolves true once the named projections (default: all) have passed `position`; false on timeout. */
  async waitFor(position: Checkpoint, timeoutMs = 10_000, names?: readonly string[]): Promise<boolean> {
    const targets = [...this.running.values()].filter((s) => !names || names.includes(s.projection.name));
    const results = await Promise.all(
      targets.map((state) =>
        state.handle ? state.handle.waitFor(position, timeoutMs) : Promise.resolve(false),
      ),
    );
    return results.every(Boolean);
  }

  /**
   * Empties the projection's tables and replays the whole log into them, while the app runs. The projection
   * is paused for the duration (the runtime hands it nothing), so no live batch interleaves with the
   * replay; afterwards it catches up on its own and joins the shared reader again.
   *
   * With `check`, the replay stops at the checkpoint the live model had when it was paused, so both sides
   * of a comparison describe the same events: `check.live` sees the live tables before they are emptied,
   * `check.rebuilt` the rebuilt ones at that same checkpoint; then the projection resumes and catches up.
   */
  async rebuild(name: string, check?: RebuildCheck): Promise<{ events: number; durationMs: number }> {
    const state = this.running.get(name);
    const handle = state?.handle;
    if (!state || !handle) throw new Error(`no projection named ${name}`);
    const started = Date.now();
    let events = 0;
    const liveCheckpoint = await handle.pause();
    try {
      await check?.live(state.projection, liveCheckpoint);
      await this.db.transaction(async (tx) => {
        for (const table of state.projection.tables) await tx.query(`DELETE FROM ${table}`);
        await tx.query(
          `UPDATE es_subscriptions SET checkpoint = '', updated_at = now() WHERE subscription_id = $1`,
          [state.subscription],
        );
      });
      state.saved = START;
      handle.moveTo(START);
      const upTo = check ? liveCheckpoint : undefined;
      let position: Checkpoint = START;
      for (;;) {
        const page = await this.store.readAll({
          after: position,
          limit: BATCH_SIZE,
          filter: state.projection.filter,
        });
        let { events: batch, next, caughtUp } = page;
        if (upTo !== undefined && (caughtUp || this.store.compareCheckpoints(next, upTo) >= 0)) {
          batch = batch.filter((e) => this.store.compareCheckpoints(e.position, upTo) <= 0);
          next = upTo;
          caughtUp = true;
        }
        if (batch.length > 0 || next !== position) {
          position = await handleUnderPolicy(
            state.processor,
            batch,
            { from: position, to: next },
            {
              moved: (at) => handle.moveTo(at),
              sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
              stopping: () => this.stopped,
            },
          );
          events += batch.length;
        }
        if (caughtUp) break;
      }
      await check?.rebuilt(state.projection, liveCheckpoint);
    } finally {
      handle.resume();
    }
    return { events, durationMs: Date.now() - started };
  }

  /** The projection as a processor of the consumer runtime. */
  private processorOf(state: ProjectionState): Processor {
    const { projection } = state;
    return {
      name: state.subscription,
      filter: projection.filter,
      batchSize: BATCH_SIZE,
      pollIntervalMs: this.pollIntervalMs,
      checkpoint: {
        load: async () => {
          state.saved = await new SubscriptionTables(this.db).ensureCheckpoint(state.subscription);
          return state.saved;
        },
      },
      failure: {
        // Only a failure of the events counts toward skipping one; the database being away never does.
        maxAttempts: POISON_ATTEMPTS,
        transient: isTransientFailure,
        retryDelayMs: (attempt) => Math.min(POISON_RETRY_DELAY_MS * attempt, this.pollIntervalMs),
        giveUp: (event, error, _attempts, range) => this.skipPoison(state, event, error, range.to),
        onError: (error) => {
          state.lastError = error instanceof Error ? error.message : String(error);
          this.logger.error({ err: error, projection: projection.name }, 'projection batch failed; retrying');
        },
      },
      handle: (events, range) => this.applyBatch(state, events, range.to),
    };
  }

  /** Applies a batch and moves the checkpoint to `to`, in one transaction. */
  private async applyBatch(
    state: ProjectionState,
    events: readonly RecordedEvent[],
    to: Checkpoint,
  ): Promise<Checkpoint> {
    if (events.length === 0) {
      state.lastError = undefined;
      return to;
    }
    try {
      await this.db.transaction(async (tx) => {
        await this.saveCheckpoint(tx, state, to);
        for (const event of events) await state.projection.apply(tx, event);
      });
    } catch (error) {
      if (error instanceof CheckpointMoved) return this.followMoved(state);
      throw error;
    }
    state.saved = to;
    state.lastError = undefined;
    return to;
  }

  /**
   * An event failed every time (a poison event, e.g. one breaking a unique constraint): recorded as a dead
   * letter of `projection:<name>` and skipped, in the transaction that moves the checkpoint past it.
   */
  private async skipPoison(
    state: ProjectionState,
    event: RecordedEvent,
    error: unknown,
    to: Checkpoint,
  ): Promise<Checkpoint> {
    const { projection } = state;
    const message = error instanceof Error ? error.message : String(error);
    this.logger.error(
      {
        projection: projection.name,
        eventId: event.id,
        stream: event.stream,
        type: event.type,
        error: message,
      },
      `projection skipped an event it cannot apply (see GET /admin/dead-letters?subscription=${state.subscription}, /health)`,
    );
    try {
      await this.db.transaction(async (tx) => {
        await new SubscriptionTables(tx).addDeadLetter(state.subscription, event, message, POISON_ATTEMPTS, {
          detail: { projection: projection.name },
        });
        await this.saveCheckpoint(tx, state, to);
      });
    } catch (failure) {
      if (failure instanceof CheckpointMoved) return this.followMoved(state);
      throw failure;
    }
    state.saved = to;
    return to;
  }

  /**
   * A dead letter sent through the projection again (POST /admin/dead-letters/:id/retry): applied in its own
   * transaction, which also removes the entry; a failure leaves the entry, with the new error.
   */
  private retryOf(state: ProjectionState): DeadLetterRetry {
    return async (dead, event) => {
      const { projection } = state;
      try {
        await this.db.transaction(async (tx) => {
          await projection.apply(tx, event);
          await new SubscriptionTables(tx).removeDeadLetter(dead.subscription, dead.eventId);
        });
      } catch (error) {
        if (isTransientFailure(error))
          throw Errors.unavailable('the read-model database cannot be reached now: retry', 5);
        const message = error instanceof Error ? error.message : String(error);
        await new SubscriptionTables(this.db).addDeadLetter(
          dead.subscription,
          event,
          message,
          dead.attempts + 1,
          { detail: dead.detail },
        );
        return { outcome: 'failed', message: `projection ${projection.name} cannot apply it: ${message}` };
      }
      return {
        outcome: 'retried',
        message: `projection ${projection.name} applied event ${event.id}; the dead letter is removed`,
      };
    };
  }

  /**
   * Moves the checkpoint from the saved one to `to`, first thing in the batch's transaction. Several
   * zapwire nodes run every projection (each needs its own read-your-writes), so this is a compare-and-set:
   * the first node to move the row holds its lock until it commits, the others then find it moved, roll
   * back without applying anything (CheckpointMoved) and follow. A batch is applied once in the cluster and
   * a checkpoint never moves backwards. The read model is rebuilt from the log, so its commit need not wait
   * for an fsync: a database crash loses the rows and their checkpoint together, and they are applied again.
   */
  private async saveCheckpoint(tx: SqlExecutor, state: ProjectionState, to: Checkpoint): Promise<void> {
    if (!(await new SubscriptionTables(tx).moveCheckpoint(state.subscription, state.saved, to)))
      throw new CheckpointMoved(state.projection.name);
  }

  /** Another node applied past this one: continue from the stored checkpoint. */
  private async followMoved(state: ProjectionState): Promise<Checkpoint> {
    state.saved = await new SubscriptionTables(this.db).read(state.subscription);
    return state.saved;
  }
}

/** The batch's checkpoint update found the checkpoint moved by another node (see saveCheckpoint). */
class CheckpointMoved extends Error {
  constructor(projection: string) {
    super(`projection ${projection}: another node moved the checkpoint`);
  }
}
