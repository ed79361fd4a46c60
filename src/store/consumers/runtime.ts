/**
 * The consumer runtime: every reader of the log in a process (projections, sink subscriptions, the
 * WebSocket tail) is a processor (port.ts `Processor`) run here, and at the head of the log they are all
 * fed by ONE shared reader: one `readAll` per page, whatever the number of processors.
 *
 * - A processor starts `starting`: it takes its lease (if it has one) and loads its checkpoint.
 * - `catching-up`: it reads on its own after its own checkpoint, page after page, until a read comes back
 *   caught up. Then it joins the shared reader, if its position is at or past the reader's (or within the
 *   reader's last page, whose rest it is handed at once); otherwise it reads on.
 * - `live`: the shared reader hands it the part of each page its filter lets through, only events after its
 *   own position, into an inbox it takes from in batches of at most its batch size. The reader reads the
 *   next page once some processor has taken everything it was handed (the fastest one sets the pace).
 * - A slow processor leaves: when the reader has more for it than its inbox holds (it is still busy with
 *   earlier batches), it is dropped from the reader, its inbox is forgotten, and it reads those events itself
 *   once it is free. It never holds back the others.
 * - A failing batch (failure.ts), a checkpoint another process moved, a failed read of the shared reader or a
 *   lost lease also send a processor back to reading on its own (or to waiting for its lease).
 *
 * The seam is gap-free and repeat-free: `readAll` is gap-safe (nothing becomes visible later at or before a
 * `next` it returned), a processor joins only at or past the reader's position (or inside the page the
 * reader still holds), and it is handed only events after its own position.
 */
import {
  START,
  type Checkpoint,
  type DeadLetterRetry,
  type EventFilter,
  type EventLog,
  type Processor,
  type ProcessorHandle,
  type ProcessorMode,
  type RecordedEvent,
} from '../port.ts';
import { LeaseLostError } from '../errors.ts';
import { eventMatches, filterUnion } from '../filter.ts';
import { Alarm, LogFollower } from '../log-follower.ts';
import { RetryLater, handleUnderPolicy, reportFailure, retryDelayOf } from './failure.ts';

/** What the runtime needs of the log. */
export type RuntimeSource = Pick<EventLog, 'readAll' | 'compareCheckpoints' | 'onNewEvents'>;

export interface ConsumerRuntimeOptions {
  /** Events per page of the shared reader. Default 500. */
  readonly pageSize?: number;
}

/** One processor as the runtime sees it (metrics, tests). */
export interface ProcessorOverview {
  readonly name: string;
  readonly mode: ProcessorMode;
  readonly position: Checkpoint;
  /** Times it joined the shared reader, and left it (slow, failed, paused, moved, lease lost). */
  readonly joins: number;
  readonly departures: number;
}

const DEFAULT_BATCH_SIZE = 100;
const DEFAULT_POLL_MS = 500;
const DEFAULT_PAGE_SIZE = 500;
/** A live processor with nothing to do sleeps this long between looks; the reader wakes it at once. */
const INBOX_WAIT_MS = 60_000;

interface Inbox {
  /** Handed over by the reader, not taken yet, in log order. */
  events: RecordedEvent[];
  /** Everything up to here that the processor's filter lets through is handled or in `events`. */
  through: Checkpoint;
  /** The page that brought `through` was caught up. */
  caughtUp: boolean;
}

interface HeldPage {
  readonly after: Checkpoint;
  readonly next: Checkpoint;
  readonly events: readonly RecordedEvent[];
  readonly caughtUp: boolean;
  /** The set of processors whose filters the page was read with. */
  readonly version: number;
}

/** One processor in the runtime: its position, its own reads when behind, its inbox when live. */
class Slot implements ProcessorHandle {
  readonly name: string;
  readonly caughtUp: Promise<void>;
  readonly filter: EventFilter | undefined;
  readonly batchSize: number;
  readonly pollIntervalMs: number;
  /** Its position (the checkpoint handled so far), its own reads, its waiters and sleeps. */
  readonly follower: LogFollower;
  state: ProcessorMode = 'starting';
  inbox: Inbox = { events: [], through: START, caughtUp: false };
  /** Times it joined and left the shared reader. */
  joins = 0;
  departures = 0;
  private resolveCaughtUp!: () => void;
  private stopping = false;
  private leaseHeld = false;
  /** Set by a lost lease until the next `begin`. */
  private leaseLost = false;
  /** Consecutive failed tries of the current batch. */
  private failures = 0;
  private pausing: { readonly resolve: (position: Checkpoint) => void } | undefined;
  private paused: Promise<Checkpoint> | undefined;
  private resumeGate: (() => void) | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(
    readonly processor: Processor,
    private readonly runtime: ConsumerRuntime,
  ) {
    this.name = processor.name;
    this.filter = processor.filter;
    this.batchSize = Math.max(1, processor.batchSize ?? DEFAULT_BATCH_SIZE);
    this.pollIntervalMs = processor.pollIntervalMs ?? DEFAULT_POLL_MS;
    this.follower = new LogFollower(runtime.source, {
      filter: processor.filter,
      batchSize: this.batchSize,
      pollIntervalMs: this.pollIntervalMs,
    });
    this.caughtUp = new Promise((resolve) => (this.resolveCaughtUp = resolve));
  }

  start(): void {
    this.done = this.run();
  }

  /** Events it may hold in its inbox beside the batch it is handling. */
  get capacity(): number {
    return Math.max(this.batchSize, this.runtime.pageSize);
  }

  position(): Checkpoint {
    return this.follower.position();
  }

  mode(): ProcessorMode {
    return this.state;
  }

  waitFor(position: Checkpoint, timeoutMs = 10_000): Promise<boolean> {
    const compare = this.runtime.source.compareCheckpoints;
    if (compare(this.follower.position(), position) >= 0) return Promise.resolve(true);
    if (this.stopping) return Promise.resolve(false);
    const reached = this.follower.waitFor(position, timeoutMs);
    // Live, it moves when the shared reader does: let the reader know a position past it exists.
    if (this.state === 'live') this.runtime.reader.hint(position, timeoutMs);
    return reached;
  }

  pause(): Promise<Checkpoint> {
    if (this.paused) return this.paused;
    this.paused = new Promise<Checkpoint>((resolve) => {
      this.pausing = { resolve };
    });
    this.runtime.reader.detach(this);
    this.follower.wake();
    return this.paused;
  }

  moveTo(position: Checkpoint): void {
    this.follower.moveTo(position);
  }

  resume(): void {
    this.pausing = undefined;
    this.paused = undefined;
    const gate = this.resumeGate;
    this.resumeGate = undefined;
    gate?.();
  }

  wake(): void {
    this.follower.wake();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.runtime.reader.detach(this);
    this.follower.stop();
    this.pausing?.resolve(this.follower.position());
    this.resume();
    await this.done;
    this.runtime.forget(this);
  }

  /** The shared reader hands over a page (its events after `inbox.through` that pass the filter). */
  offer(events: readonly RecordedEvent[], next: Checkpoint, caughtUp: boolean): void {
    if (this.state !== 'live') return;
    const compare = this.runtime.source.compareCheckpoints;
    const inbox = this.inbox;
    const mine = events.filter(
      (event) => compare(event.position, inbox.through) > 0 && eventMatches(this.filter, event),
    );
    if (inbox.events.length > 0 && inbox.events.length + mine.length > this.capacity) {
      // Still busy with what it was handed before: it reads these itself once it is free.
      this.runtime.reader.detach(this);
      return;
    }
    inbox.events.push(...mine);
    if (compare(next, inbox.through) > 0) inbox.through = next;
    inbox.caughtUp = caughtUp;
    this.follower.wake();
  }

  /** Joined the shared reader at `position`. */
  joined(position: Checkpoint): void {
    this.inbox = { events: [], through: position, caughtUp: false };
    this.state = 'live';
    this.joins += 1;
  }

  /** Left the shared reader (slow, failed, moved, paused, stopped): it reads on its own now. */
  left(): void {
    this.departures += 1;
    this.inbox = { events: [], through: this.follower.position(), caughtUp: false };
    if (this.state === 'live') this.state = 'catching-up';
    this.follower.wake();
  }

  private report(error: unknown): void {
    reportFailure(this.processor.failure, error);
  }

  private get halted(): boolean {
    return this.stopping || this.pausing !== undefined || this.leaseLost;
  }

  private async run(): Promise<void> {
    try {
      while (!this.stopping) {
        if (this.pausing) {
          await this.park();
          continue;
        }
        if (this.state === 'starting') {
          await this.begin();
          continue;
        }
        if (this.state === 'live') await this.takeInbox();
        else await this.catchUp();
      }
    } finally {
      this.runtime.reader.detach(this);
      this.state = 'stopped';
      if (this.leaseHeld) {
        this.leaseHeld = false;
        await this.processor.lease?.release().catch((error: unknown) => this.report(error));
      }
      this.follower.settleWaiters();
    }
  }

  /** Paused: nothing is handed to it until resume(). */
  private async park(): Promise<void> {
    const pausing = this.pausing!;
    const wasStarting = this.state === 'starting';
    this.state = 'paused';
    const resumed = new Promise<void>((resolve) => (this.resumeGate = resolve));
    pausing.resolve(this.follower.position());
    await resumed;
    if (this.state === 'paused') this.state = wasStarting ? 'starting' : 'catching-up';
    this.failures = 0;
  }

  /** Takes the lease (if any) and loads the checkpoint. */
  private async begin(): Promise<void> {
    const { lease, checkpoint } = this.processor;
    this.leaseLost = false;
    try {
      if (lease && !this.leaseHeld) {
        if (!(await lease.acquire(() => this.loseLease()))) {
          await this.follower.sleep(lease.retryMs ?? this.pollIntervalMs);
          return;
        }
        this.leaseHeld = true;
      }
      const position = await checkpoint.load();
      if (this.halted) return;
      this.follower.moveTo(position);
      this.failures = 0;
      this.state = 'catching-up';
    } catch (error) {
      this.report(error);
      this.failures += 1;
      await this.follower.sleep(retryDelayOf(this.processor.failure, this.failures));
    }
  }

  /** The lease is another process's now: stop taking batches, wait for it again. */
  private loseLease(): void {
    this.leaseHeld = false;
    this.leaseLost = true;
    this.runtime.reader.detach(this);
    if (this.state !== 'stopped' && this.state !== 'paused') this.state = 'starting';
    this.follower.wake();
  }

  /** One page of its own, handled; joins the shared reader when the page was caught up. */
  private async catchUp(): Promise<void> {
    const from = this.follower.position();
    let page;
    try {
      page = await this.follower.read(this.batchSize);
    } catch (error) {
      this.report(error);
      this.failures += 1;
      await this.follower.sleep(retryDelayOf(this.processor.failure, this.failures));
      return;
    }
    // Asked to stop (or pause) while reading: no new batch.
    if (this.halted || this.state !== 'catching-up') return;
    if (page.events.length > 0 || page.next !== from) {
      if (!(await this.deliver(page.events, from, page.next))) return;
      if (this.follower.position() !== page.next) return;
    }
    if (!page.caughtUp) return;
    this.resolveCaughtUp();
    if (!this.halted && this.state === 'catching-up') this.runtime.reader.join(this);
  }

  /** Live: takes the next batch from the inbox, or waits for the reader. */
  private async takeInbox(): Promise<void> {
    const inbox = this.inbox;
    const from = this.follower.position();
    if (inbox.events.length === 0 && this.runtime.source.compareCheckpoints(inbox.through, from) <= 0) {
      if (inbox.caughtUp) this.resolveCaughtUp();
      await this.follower.sleep(INBOX_WAIT_MS);
      return;
    }
    const events = inbox.events.splice(0, this.batchSize);
    const to = inbox.events.length > 0 ? events.at(-1)!.position : inbox.through;
    if (inbox.events.length === 0) this.runtime.reader.ready();
    const handled = await this.deliver(events, from, to);
    // Failed, or its checkpoint is elsewhere now (another process moved it): it reads on its own.
    if ((!handled || this.follower.position() !== to) && this.state === 'live') {
      this.runtime.reader.detach(this);
    }
  }

  /** Hands a batch to the processor under its failure policy. false: it failed; tried again later. */
  private async deliver(
    events: readonly RecordedEvent[],
    from: Checkpoint,
    to: Checkpoint,
  ): Promise<boolean> {
    try {
      await handleUnderPolicy(
        this.processor,
        events,
        { from, to },
        {
          moved: (at) => this.follower.moveTo(at),
          sleep: (ms) => this.follower.sleep(ms),
          stopping: () => this.stopping,
        },
      );
      this.failures = 0;
      return true;
    } catch (error) {
      if (error instanceof LeaseLostError) {
        this.report(error);
        this.loseLease();
        return false;
      }
      if (!(error instanceof RetryLater)) this.report(error);
      this.runtime.reader.detach(this);
      this.failures += 1;
      if (!this.stopping) await this.follower.sleep(retryDelayOf(this.processor.failure, this.failures));
      return false;
    }
  }
}

/** The one reader of the log that feeds every live processor. */
class SharedReader {
  private follower: LogFollower | undefined;
  private readonly attached = new Set<Slot>();
  private readonly registered = new Set<Slot>();
  private filter: EventFilter | undefined;
  /** Changes whenever the set of processors (so the filter) changes. */
  private version = 0;
  /** Changes when the reader's position is moved under a read in flight (its page is then dropped). */
  private epoch = 0;
  private held: HeldPage | undefined;
  /** Rung when a live processor took everything it was handed, or joined. */
  private readonly gate = new Alarm();
  /** The last page was caught up: wait for new events (or the poll) before the next read. */
  private idleNext = true;
  private reading = false;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly source: RuntimeSource,
    private readonly pageSize: number,
  ) {}

  register(slot: Slot): void {
    this.registered.add(slot);
    this.refilter();
  }

  unregister(slot: Slot): void {
    this.detach(slot);
    this.registered.delete(slot);
    this.refilter();
  }

  private refilter(): void {
    this.filter = filterUnion([...this.registered].map((slot) => slot.filter));
    this.version += 1;
  }

  private ensureRunning(): LogFollower {
    if (!this.follower) {
      this.follower = new LogFollower(this.source, {
        batchSize: this.pageSize,
        pollIntervalMs: DEFAULT_POLL_MS,
        wakeOn: 'any',
      });
      this.running = this.loop(this.follower);
    }
    return this.follower;
  }

  /** Position of the reader (START before it started). */
  position(): Checkpoint {
    return this.follower?.position() ?? START;
  }

  liveCount(): number {
    return this.attached.size;
  }

  /** A caught-up processor asks to be fed: true when it is live now. */
  join(slot: Slot): boolean {
    if (this.closed) return false;
    const follower = this.ensureRunning();
    const compare = this.source.compareCheckpoints;
    const position = slot.position();
    const held = this.held;
    if (this.attached.size === 0) {
      // Nobody else is fed: the reader moves to this processor's position (a read in flight is dropped,
      // and the reader reads again at once; otherwise it waits for new events, as the joiner is caught up).
      if (position !== follower.position()) {
        follower.moveTo(position);
        this.epoch += 1;
        this.held = undefined;
        if (!this.reading) this.idleNext = true;
      }
      this.attach(slot, position);
    } else if (compare(position, follower.position()) >= 0) {
      this.attach(slot, position);
    } else if (held && held.version === this.version && compare(held.after, position) <= 0) {
      this.attach(slot, position);
      slot.offer(held.events, held.next, held.caughtUp);
    } else {
      return false;
    }
    return true;
  }

  private attach(slot: Slot, position: Checkpoint): void {
    slot.joined(position);
    this.attached.add(slot);
    const waited = slot.follower.waitingFor();
    if (waited !== undefined) this.hint(waited, 10_000);
    this.gate.wake();
  }

  detach(slot: Slot): void {
    if (!this.attached.delete(slot)) return;
    slot.left();
  }

  /** A live processor took everything it was handed: the reader may read the next page. */
  ready(): void {
    this.gate.wake();
  }

  /** Someone waits for `position`: look for it now, and again soon while it is not visible. */
  hint(position: Checkpoint, timeoutMs: number): void {
    void this.follower?.waitFor(position, timeoutMs);
  }

  /** Some live processor has taken everything it was handed. */
  private canRead(): boolean {
    for (const slot of this.attached) if (slot.inbox.events.length === 0) return true;
    return false;
  }

  private pollIntervalMs(): number {
    let ms = Number.POSITIVE_INFINITY;
    for (const slot of this.attached) ms = Math.min(ms, slot.pollIntervalMs);
    return Number.isFinite(ms) ? ms : DEFAULT_POLL_MS;
  }

  private async loop(follower: LogFollower): Promise<void> {
    while (!this.closed) {
      if (!this.canRead()) {
        await this.gate.sleep(INBOX_WAIT_MS);
        continue;
      }
      if (this.idleNext) {
        await follower.idle(this.pollIntervalMs());
        this.idleNext = false;
        continue;
      }
      const epoch = this.epoch;
      const version = this.version;
      const after = follower.position();
      let page;
      this.reading = true;
      try {
        page = await follower.read(this.pageSize, this.filter);
      } catch {
        // Each processor reads on its own instead, under its own failure policy, and joins again later.
        for (const slot of [...this.attached]) this.detach(slot);
        continue;
      } finally {
        this.reading = false;
      }
      if (this.closed) return;
      // A processor registered (or left) during the read: the page was read with a filter that may leave
      // its streams out, and it may have joined already; a page that moved it past events it never saw
      // would lose them. Read the same range again with the filter of now.
      if (epoch !== this.epoch || version !== this.version) {
        this.idleNext = false;
        continue;
      }
      this.held = { after, next: page.next, events: page.events, caughtUp: page.caughtUp, version };
      for (const slot of [...this.attached]) slot.offer(page.events, page.next, page.caughtUp);
      follower.advance(page.next);
      this.idleNext = page.caughtUp;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.follower?.stop();
    this.gate.wake();
    await this.running;
  }
}

/**
 * One per log and process (the Consumers of src/store/subscriptions/hub.ts own it): runs the processors,
 * the shared reader, and the registry of dead-letter retries.
 */
export class ConsumerRuntime {
  readonly reader: SharedReader;
  readonly pageSize: number;
  private readonly slots = new Set<Slot>();
  private readonly retries = new Map<string, DeadLetterRetry>();
  private closed = false;

  constructor(
    readonly source: RuntimeSource,
    options: ConsumerRuntimeOptions = {},
  ) {
    this.pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    this.reader = new SharedReader(source, this.pageSize);
  }

  process(processor: Processor): ProcessorHandle {
    if (this.closed) throw new Error('the event store is closed');
    const slot = new Slot(processor, this);
    this.slots.add(slot);
    this.reader.register(slot);
    slot.start();
    return slot;
  }

  /** A stopped processor leaves the runtime. */
  forget(slot: Slot): void {
    this.slots.delete(slot);
    this.reader.unregister(slot);
  }

  /** The processors by mode, and the shared reader's position (metrics, tests). */
  overview(): {
    readonly reader: Checkpoint;
    readonly live: number;
    readonly processors: ReadonlyArray<ProcessorOverview>;
  } {
    return {
      reader: this.reader.position(),
      live: this.reader.liveCount(),
      processors: [...this.slots].map((slot) => ({
        name: slot.name,
        mode: slot.mode(),
        position: slot.position(),
        joins: slot.joins,
        departures: slot.departures,
      })),
    };
  }

  onRetry(subscription: string, retry: DeadLetterRetry): () => void {
    this.retries.set(subscription, retry);
    return () => {
      if (this.retries.get(subscription) === retry) this.retries.delete(subscription);
    };
  }

  retryOf(subscription: string): DeadLetterRetry | undefined {
    return this.retries.get(subscription);
  }

  /** Stops every processor (each finishes its batch in progress), then the shared reader. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.slots].map((slot) => slot.stop()));
    await this.reader.close();
  }
}
