import type { Logger } from 'pino';
import type { Checkpoint, EventLog, RecordedEvent } from '../src/store/port.ts';
import { START } from '../src/store/port.ts';
import { LogFollower } from '../src/store/log-follower.ts';
import { RELAXED_COMMIT } from '../src/store/relaxed-commit.ts';
import type { SqlDatabase, SqlExecutor } from '../src/store/sql.ts';
import type { Projection } from './projection.ts';
import { isTransientFailure } from './transient.ts';

const BATCH_SIZE = 500;
/** Tries of one event before it counts as poison (a deterministic failure) and is skipped. */
const POISON_ATTEMPTS = 3;
const POISON_RETRY_DELAY_MS = 100;

interface RunningProjection {
  readonly projection: Projection;
  /** Follows the log with the projection's filter; its position is the projection's checkpoint. */
  readonly follower: LogFollower;
  /**
   * The checkpoint in the read model, when it lags behind `checkpoint`: the loop moved past events the
   * filter left out without a transaction (nothing to write), and saves the position with the next batch
   * that writes, or at stop. Reading those events again after a restart changes nothing.
   */
  saved: Checkpoint;
  running: Promise<void> | undefined;
  /** Set during a rebuild: the loop pauses at the next batch boundary. */
  paused: Promise<void> | undefined;
  lastError: string | undefined;
}

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

/** An event a projection skipped because applying it failed every time (rm_projection_poison). */
export interface PoisonEvent {
  readonly projection: string;
  readonly position: string;
  readonly eventId: string;
  readonly stream: string;
  readonly eventType: string;
  readonly error: string;
  readonly skippedAt: Date;
}

/**
 * Keeps the read model up to date. Each projection reads the log after its checkpoint and applies a batch
 * and the new checkpoint in ONE read-model transaction, so a crash never applies a batch twice or skips
 * one. Each follows the log with a LogFollower: woken by this process's appends that hold an event its
 * filter lets through, polling as a fallback (other processes).
 */
export class ProjectionRunner {
  private readonly running = new Map<string, RunningProjection>();
  private stopped = false;

  constructor(
    private readonly store: Pick<EventLog, 'readAll' | 'compareCheckpoints' | 'onAppended'>,
    private readonly db: SqlDatabase,
    private readonly projections: readonly Projection[],
    private readonly logger: Logger,
    private readonly pollIntervalMs = 500,
  ) {}

  async start(): Promise<void> {
    for (const projection of this.projections) {
      const { rows } = await this.db.query<{ checkpoint: string }>(
        `INSERT INTO rm_projection_checkpoints (projection) VALUES ($1)
         ON CONFLICT (projection) DO UPDATE SET projection = EXCLUDED.projection RETURNING checkpoint`,
        [projection.name],
      );
      const checkpoint = (rows[0]?.checkpoint ?? START) as Checkpoint;
      const state: RunningProjection = {
        projection,
        // Only appends holding an event of this projection wake it: the others would read nothing.
        follower: new LogFollower(this.store, {
          after: checkpoint,
          filter: projection.filter,
          batchSize: BATCH_SIZE,
          pollIntervalMs: this.pollIntervalMs,
          wakeOn: 'appended',
        }),
        saved: checkpoint,
        running: undefined,
        paused: undefined,
        lastError: undefined,
      };
      this.running.set(projection.name, state);
    }
    for (const state of this.running.values()) state.running = this.loop(state);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const state of this.running.values()) {
      state.follower.stop();
      state.follower.settleWaiters();
    }
    await Promise.all([...this.running.values()].map((s) => s.running));
    for (const state of this.running.values()) {
      if (state.saved === state.follower.position()) continue;
      // Only forward, and only from where this node saw it: another node may have moved on meanwhile.
      await this.db
        .query(
          `UPDATE rm_projection_checkpoints SET checkpoint = $2, updated_at = now()
            WHERE projection = $1 AND checkpoint = $3`,
          [state.projection.name, state.follower.position(), state.saved],
        )
        .catch((error: unknown) =>
          this.logger.warn({ err: error, projection: state.projection.name }, 'could not save a checkpoint'),
        );
    }
  }

  status(): ProjectionStatus[] {
    return [...this.running.values()].map((s) => ({
      name: s.projection.name,
      checkpoint: s.follower.position(),
      lastError: s.lastError,
    }));
  }

  names(): string[] {
    return this.projections.map((p) => p.name);
  }

  /** Every event a projection skipped, oldest first (for /health, /metrics and an operator). */
  async poisonEvents(): Promise<PoisonEvent[]> {
    const { rows } = await this.db.query<{
      projection: string;
      position: string;
      event_id: string;
      stream: string;
      event_type: string;
      error: string;
      skipped_at: Date;
    }>('SELECT * FROM rm_projection_poison ORDER BY skipped_at, projection, position');
    return rows.map((r) => ({
      projection: r.projection,
      position: r.position,
      eventId: r.event_id,
      stream: r.stream,
      eventType: r.event_type,
      error: r.error,
      skippedAt: new Date(r.skipped_at),
    }));
  }

  /** Resolves true once the named projections (default: all) have passed `position`; false on timeout. */
  async waitFor(position: Checkpoint, timeoutMs = 10_000, names?: readonly string[]): Promise<boolean> {
    const targets = [...this.running.values()].filter((s) => !names || names.includes(s.projection.name));
    const results = await Promise.all(targets.map((state) => this.waitForOne(state, position, timeoutMs)));
    return results.every(Boolean);
  }

  private waitForOne(state: RunningProjection, position: Checkpoint, timeoutMs: number): Promise<boolean> {
    if (this.stopped && this.store.compareCheckpoints(state.follower.position(), position) < 0) {
      return Promise.resolve(false);
    }
    return state.follower.waitFor(position, timeoutMs);
  }

  /**
   * Empties the projection's tables and replays the whole log into them, while the app runs. The loop is
   * paused for the duration so no live batch interleaves with the replay.
   *
   * With `check`, the replay stops at the checkpoint the live model had when it was paused, so both sides
   * of a comparison describe the same events: `check.live` sees the live tables before they are emptied,
   * `check.rebuilt` the rebuilt ones at that same checkpoint; then the loop resumes and catches up.
   */
  async rebuild(name: string, check?: RebuildCheck): Promise<{ events: number; durationMs: number }> {
    const state = this.running.get(name);
    if (!state) throw new Error(`no projection named ${name}`);
    let release!: () => void;
    state.paused = new Promise<void>((resolve) => (release = resolve));
    const started = Date.now();
    let events = 0;
    state.follower.wake();
    try {
      await state.running?.catch(() => undefined);
      state.running = undefined;
      const liveCheckpoint = state.follower.position();
      await check?.live(state.projection, liveCheckpoint);
      await this.db.transaction(async (tx) => {
        for (const table of state.projection.tables) await tx.query(`DELETE FROM ${table}`);
        await tx.query(
          `UPDATE rm_projection_checkpoints SET checkpoint = '', updated_at = now() WHERE projection = $1`,
          [name],
        );
      });
      state.follower.moveTo(START);
      state.saved = START;
      for (;;) {
        const applied = await this.applyNextBatch(state, check ? liveCheckpoint : undefined);
        events += applied.count;
        if (applied.caughtUp) break;
      }
      await check?.rebuilt(state.projection, liveCheckpoint);
    } finally {
      state.paused = undefined;
      release();
      if (!this.stopped) state.running = this.loop(state);
    }
    return { events, durationMs: Date.now() - started };
  }

  private async loop(state: RunningProjection): Promise<void> {
    while (!this.stopped && !state.paused) {
      let caughtUp = false;
      try {
        caughtUp = (await this.applyNextBatch(state)).caughtUp;
        state.lastError = undefined;
      } catch (error) {
        state.lastError = error instanceof Error ? error.message : String(error);
        this.logger.error(
          { err: error, projection: state.projection.name },
          'projection batch failed; retrying',
        );
        caughtUp = true;
      }
      if (caughtUp && !this.stopped && !state.paused) await state.follower.idle();
    }
  }

  /** Applies the next batch; with `upTo`, nothing past that checkpoint (it then counts as caught up). */
  private async applyNextBatch(
    state: RunningProjection,
    upTo?: Checkpoint,
  ): Promise<{ count: number; caughtUp: boolean }> {
    const { projection, follower } = state;
    const checkpoint = follower.position();
    const result = await follower.read();
    let { events, next, caughtUp } = result;
    if (upTo !== undefined && (caughtUp || this.store.compareCheckpoints(next, upTo) >= 0)) {
      events = events.filter((e) => this.store.compareCheckpoints(e.position, upTo) <= 0);
      next = upTo;
      caughtUp = true;
    }
    if (events.length === 0 && next === checkpoint) return { count: 0, caughtUp: true };
    if (events.length > 0) {
      try {
        await this.db.transaction(async (tx) => {
          await this.saveCheckpoint(tx, projection, state.saved, next);
          for (const event of events) await projection.apply(tx, event);
        });
      } catch (error) {
        if (error instanceof CheckpointMoved) return this.followMoved(state);
        if (isTransientFailure(error)) throw error;
        try {
          await this.applyOneByOne(state, events, next);
        } catch (oneByOne) {
          if (oneByOne instanceof CheckpointMoved) return this.followMoved(state);
          throw oneByOne;
        }
      }
      state.saved = next;
    }
    follower.moveTo(next);
    return { count: events.length, caughtUp };
  }

  /**
   * A batch failed for a reason that is not the database being away: apply its events one at a time, so
   * the one that fails every time (a poison event, e.g. one breaking a unique constraint) is recorded and
   * skipped instead of wedging the projection, and every other event still lands.
   */
  private async applyOneByOne(
    state: RunningProjection,
    events: readonly RecordedEvent[],
    next: Checkpoint,
  ): Promise<void> {
    const { projection } = state;
    for (const event of events) {
      for (let attempt = 1; ; attempt += 1) {
        try {
          await this.db.transaction(async (tx) => {
            await this.saveCheckpoint(tx, projection, state.saved, event.position);
            await projection.apply(tx, event);
          });
          state.saved = event.position;
          break;
        } catch (error) {
          if (isTransientFailure(error)) throw error;
          if (attempt < POISON_ATTEMPTS) {
            await new Promise((resolve) => setTimeout(resolve, POISON_RETRY_DELAY_MS * attempt));
            continue;
          }
          await this.skipPoison(state, event, error);
          break;
        }
      }
      state.follower.moveTo(event.position);
    }
    await this.db.transaction((tx) => this.saveCheckpoint(tx, projection, state.saved, next));
  }

  private async skipPoison(state: RunningProjection, event: RecordedEvent, error: unknown): Promise<void> {
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
      'projection skipped an event it cannot apply (see rm_projection_poison, /health)',
    );
    await this.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO rm_projection_poison (projection, position, event_id, stream, event_type, error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (projection, position) DO UPDATE SET error = EXCLUDED.error, skipped_at = now()`,
        [projection.name, event.position, event.id, event.stream, event.type, message.slice(0, 1000)],
      );
      await this.saveCheckpoint(tx, projection, state.saved, event.position);
    });
    state.saved = event.position;
  }

  /**
   * Moves the checkpoint from `from` to `to`, first thing in the batch's transaction. Several zapwire
   * nodes run every projection (each needs its own read-your-writes), so this is a compare-and-set: the
   * first node to move the row holds its lock until it commits, the others then find it moved, roll back
   * without applying anything (CheckpointMoved) and follow. A batch is applied once in the cluster and a
   * checkpoint never moves backwards.
   */
  private async saveCheckpoint(
    tx: SqlExecutor,
    projection: Projection,
    from: Checkpoint,
    to: Checkpoint,
  ): Promise<void> {
    // The read model is rebuilt from the log, so its commit need not wait for an fsync (RELAXED_COMMIT):
    // a database crash loses the rows and their checkpoint together, and they are applied again.
    const { rowCount } = await tx.query(
      `UPDATE rm_projection_checkpoints SET checkpoint = $2, updated_at = now()
         FROM ${RELAXED_COMMIT} WHERE projection = $1 AND checkpoint = $3`,
      [projection.name, to, from],
    );
    if (rowCount === 0) throw new CheckpointMoved(projection.name);
  }

  /** Another node applied past this one: continue from the stored checkpoint. */
  private async followMoved(state: RunningProjection): Promise<{ count: number; caughtUp: boolean }> {
    const { rows } = await this.db.query<{ checkpoint: string }>(
      'SELECT checkpoint FROM rm_projection_checkpoints WHERE projection = $1',
      [state.projection.name],
    );
    const stored = (rows[0]?.checkpoint ?? START) as Checkpoint;
    state.saved = stored;
    state.follower.moveTo(stored);
    return { count: 0, caughtUp: false };
  }
}

/** The batch's checkpoint update found the checkpoint moved by another node (see saveCheckpoint). */
class CheckpointMoved extends Error {
  constructor(projection: string) {
    super(`projection ${projection}: another node moved the checkpoint`);
  }
}
