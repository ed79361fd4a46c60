/**
 * An in-memory EventStore for the sinks' tests: the port's semantics (gap-free positions, filtered reads,
 * subscriptions that move their checkpoint only after the handler resolves, dead letters), no durability.
 * Processors (`process`) run on the real consumer runtime, over this log. Crash tests use the real adapters
 * instead.
 */
import { randomUUID } from 'node:crypto';
import {
  START,
  type AppendResult,
  type BatchHandler,
  type Checkpoint,
  type DeadLetter,
  type DeadLetterNote,
  type DeadLetterQuery,
  type DeadLetterRetry,
  type DeadLetterRetryResult,
  type EventFilter,
  type EventStore,
  type NewEvent,
  type Processor,
  type ProcessorHandle,
  type ReadAllOptions,
  type ReadAllResult,
  type RecordedEvent,
  type Subscription,
  type SubscriptionOptions,
} from '../../../../src/store/port.ts';
import { eventMatches } from '../../../../src/store/filter.ts';
import { ConsumerRuntime } from '../../../../src/store/consumers/runtime.ts';

const pos = (n: number): Checkpoint => String(n).padStart(12, '0') as Checkpoint;
const num = (c: Checkpoint): number => (c === START ? 0 : Number(c));

function matches(event: RecordedEvent, filter: EventFilter | undefined): boolean {
  return eventMatches(filter, event);
}

export class MemoryEventStore implements EventStore {
  readonly kind = 'postgres' as const;
  readonly events: RecordedEvent[] = [];
  private readonly streams = new Map<string, number>();
  private readonly checkpoints = new Map<string, Checkpoint>();
  private readonly deadLetters = new Map<string, DeadLetter>();
  private nextDeadLetterId = 0;
  private readonly listeners = new Set<(result: AppendResult, stream: string) => void>();
  /** Test hook: makes readAll fail while set. */
  failReads: Error | undefined;
  readonly runtime = new ConsumerRuntime(this);

  async append(stream: string, events: readonly NewEvent[]): Promise<AppendResult> {
    let version = this.streams.get(stream) ?? 0;
    const recorded: RecordedEvent[] = [];
    for (const e of events) {
      version += 1;
      const r: RecordedEvent = {
        id: e.id ?? randomUUID(),
        stream,
        streamPosition: version,
        position: pos(this.events.length + 1),
        type: e.type,
        data: { ...e.data },
        metadata: { ...(e.metadata ?? {}) },
        createdAt: new Date(),
      };
      this.events.push(r);
      recorded.push(r);
    }
    this.streams.set(stream, version);
    const result: AppendResult = {
      nextVersion: version,
      position: recorded.at(-1)!.position,
      events: recorded,
    };
    for (const l of this.listeners) l(result, stream);
    return result;
  }

  async readStream(stream: string): Promise<RecordedEvent[]> {
    return this.events.filter((e) => e.stream === stream);
  }

  async readAll(options: ReadAllOptions = {}): Promise<ReadAllResult> {
    if (this.failReads) throw this.failReads;
    const after = num(options.after ?? START);
    const limit = options.limit ?? 1000;
    const out: RecordedEvent[] = [];
    let next = after;
    for (let i = after; i < this.events.length; i++) {
      const e = this.events[i]!;
      next = i + 1;
      if (matches(e, options.filter)) {
        out.push(e);
        if (out.length >= limit) break;
      }
    }
    return { events: out, next: next === 0 ? START : pos(next), caughtUp: next >= this.events.length };
  }

  async streamVersion(stream: string): Promise<number> {
    return this.streams.get(stream) ?? 0;
  }

  async deleteStream(stream: string): Promise<void> {
    this.streams.delete(stream);
  }

  subscribe(name: string, options: SubscriptionOptions, handler: BatchHandler): Subscription {
    let stopped = false;
    let wake: (() => void) | undefined;
    let resolveCaughtUp!: () => void;
    const caughtUp = new Promise<void>((r) => (resolveCaughtUp = r));
    const waiters: Array<{ at: Checkpoint; resolve: (ok: boolean) => void }> = [];
    if (!this.checkpoints.has(name)) {
      this.checkpoints.set(name, options.startAt === 'end' ? pos(this.events.length) : START);
    }
    const unlisten = this.onAppended(() => wake?.());
    const settle = (): void => {
      const current = this.checkpoints.get(name) ?? START;
      for (const w of [...waiters]) {
        if (this.compareCheckpoints(current, w.at) >= 0) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(true);
        }
      }
    };
    // No leases here: every subscriber runs from the start (a failing callback must not stop it).
    const active = (running: boolean): void => {
      try {
        options.onActive?.(running);
      } catch {
        // as the SQL hub does
      }
    };
    active(true);
    const loop = async (): Promise<void> => {
      while (!stopped) {
        let idle = false;
        try {
          const page = await this.readAll({
            after: this.checkpoints.get(name) ?? START,
            limit: options.batchSize ?? 100,
            filter: options.filter,
          });
          const from = this.checkpoints.get(name) ?? START;
          if (page.events.length > 0) await handler(page.events, { from, to: page.next });
          if (stopped) break;
          this.checkpoints.set(name, page.next);
          settle();
          if (page.caughtUp) {
            resolveCaughtUp();
            idle = true;
          }
        } catch (error) {
          options.onError?.(error);
          await new Promise((r) => setTimeout(r, options.retryDelayMs ?? 1000));
          continue;
        }
        if (idle) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, options.pollIntervalMs ?? 500);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      }
    };
    const running = loop();
    const checkpoints = this.checkpoints;
    const compare = (a: Checkpoint, b: Checkpoint): number => this.compareCheckpoints(a, b);
    return {
      name,
      caughtUp,
      position: () => checkpoints.get(name) ?? START,
      waitFor(at: Checkpoint, timeoutMs = 10_000): Promise<boolean> {
        if (compare(checkpoints.get(name) ?? START, at) >= 0) return Promise.resolve(true);
        return new Promise((resolve) => {
          const timer = setTimeout(() => resolve(false), timeoutMs);
          waiters.push({
            at,
            resolve: (ok) => {
              clearTimeout(timer);
              resolve(ok);
            },
          });
        });
      },
      async stop() {
        stopped = true;
        unlisten();
        wake?.();
        await running;
        active(false);
      },
    };
  }

  process(processor: Processor): ProcessorHandle {
    return this.runtime.process(processor);
  }

  onRetry(subscription: string, retry: DeadLetterRetry): () => void {
    return this.runtime.onRetry(subscription, retry);
  }

  async retryDeadLetter(id: string, requestedBy: string): Promise<DeadLetterRetryResult | undefined> {
    const dead = await this.deadLetter(id);
    const event = dead && this.events.find((e) => e.id === dead.eventId);
    const retry = dead && this.runtime.retryOf(dead.subscription);
    if (!dead || !event || !retry) return undefined;
    return retry(dead, event, requestedBy);
  }

  async readCheckpoint(subscription: string): Promise<Checkpoint> {
    return this.checkpoints.get(subscription) ?? START;
  }

  async resetCheckpoint(subscription: string, to: Checkpoint): Promise<void> {
    this.checkpoints.set(subscription, to);
  }

  async addDeadLetter(
    subscription: string,
    event: RecordedEvent,
    error: string,
    attempts: number,
    note: DeadLetterNote = {},
  ): Promise<void> {
    const key = `${subscription}\u0000${event.id}`;
    this.deadLetters.set(key, {
      id: this.deadLetters.get(key)?.id ?? String((this.nextDeadLetterId += 1)),
      subscription,
      eventId: event.id,
      stream: event.stream,
      position: event.position,
      eventType: event.type,
      instanceId: note.instanceId,
      detail: note.detail ?? {},
      error,
      attempts,
      failedAt: new Date(),
    });
  }

  async listDeadLetters(subscription: string): Promise<DeadLetter[]> {
    return [...this.deadLetters.values()]
      .filter((d) => d.subscription === subscription)
      .sort((a, b) => this.compareCheckpoints(a.position, b.position));
  }

  async findDeadLetters(query: DeadLetterQuery): Promise<DeadLetter[]> {
    return [...this.deadLetters.values()]
      .filter(
        (d) =>
          (!query.subscriptions || query.subscriptions.includes(d.subscription)) &&
          (query.instanceId === undefined || d.instanceId === query.instanceId) &&
          (query.before === undefined || Number(d.id) < Number(query.before)),
      )
      .sort((a, b) => Number(b.id) - Number(a.id))
      .slice(0, query.limit ?? 50);
  }

  async deadLetter(id: string): Promise<DeadLetter | undefined> {
    return [...this.deadLetters.values()].find((d) => d.id === id);
  }

  async removeDeadLetter(subscription: string, eventId: string): Promise<void> {
    this.deadLetters.delete(`${subscription}\u0000${eventId}`);
  }

  async capDeadLetters(subscriptions: readonly string[], instanceId: string, max: number): Promise<number> {
    const mine = [...this.deadLetters.entries()]
      .filter(([, d]) => d.instanceId === instanceId && subscriptions.includes(d.subscription))
      .sort(([, a], [, b]) => Number(b.id) - Number(a.id));
    for (const [key] of mine.slice(max)) this.deadLetters.delete(key);
    return Math.max(0, mine.length - max);
  }

  async pruneDeadLetters(subscriptions: readonly string[], failedBefore: Date): Promise<number> {
    let removed = 0;
    for (const [key, d] of this.deadLetters) {
      if (subscriptions.includes(d.subscription) && d.failedAt < failedBefore) {
        this.deadLetters.delete(key);
        removed += 1;
      }
    }
    return removed;
  }

  compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
    return Math.sign(num(a) - num(b));
  }

  async headPosition(): Promise<Checkpoint> {
    return this.events.length === 0 ? START : pos(this.events.length);
  }

  onAppended(listener: (result: AppendResult, stream: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onNewEvents(listener: (position?: Checkpoint) => void): () => void {
    return this.onAppended((result) => listener(result.position));
  }

  async ping(): Promise<void> {}
  async close(): Promise<void> {
    await this.runtime.close();
  }
}
