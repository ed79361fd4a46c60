/**
 * Sends webhook deliveries, one ordered queue per (instance, target), each with a position in the log
 * (queue.ts). The log is the queue: a queue at the head is fed by the log's reader (`accept`); a queue that
 * falls behind (receiver down, slow, or a restart) keeps only its position and reads its own events from the
 * log until it has caught up, then joins the reader again. Nothing is copied per event, nothing is dropped,
 * and memory holds a page per busy queue however long an outage lasts.
 *
 * Sending: up to `pipeline` requests of a queue go out pipelined on its own connection, in log order. What
 * an answer means is attempt-policy.ts's: delivered; refused (a 4xx other than 408/429: dead-lettered at
 * once, the queue moves on); or the receiver is down (no answer, 5xx, 408, 429, a redirect): the queue
 * pauses, keeps its position and probes the receiver with its head event with a capped backoff; when the
 * receiver answers it drains its backlog, in order and pipelined. Only an event older than the maximum age
 * is dead-lettered for an outage.
 *
 * The reader's position (the `sink-webhook` subscription's checkpoint) moves past an event once it is
 * delivered or dead-lettered, or once its queue is recorded as detached at an earlier position: so a crash
 * loses nothing, and repeats only what was sent after the last recorded position (same event ids).
 */
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import { Semaphore } from '../../async/semaphore.ts';
import type { Checkpoint, EventStore } from '../../store/port.ts';
import { sleep } from '../backoff.ts';
import type { SinkMetrics } from '../metrics.ts';
import { isExpired, probeDelay, verdictOf, type OutagePolicy, type Verdict } from './attempt-policy.ts';
import type { BacklogReader } from './backlog.ts';
import { recordedEventOf, type Delivery } from './delivery.ts';
import { QueueItem, WebhookQueue, queueKey } from './queue.ts';
import { HEALTHY, type DeliveryTarget, type QueueHealth, type QueueStore } from './queue-store.ts';
import type { SendResult, WebhookSender } from './sender.ts';
import { DELIVERY_ID_HEADER, EVENT_ID_HEADER, signatureHeaders } from './signature.ts';

/** The dead-letter subscription names in the store, per target. */
export const WEBHOOK_SUBSCRIPTION = 'sink-webhook';
export const GLOBAL_WEBHOOK_DEAD_LETTERS = 'sink-webhook-global';
export const deadLetterSubscriptionOf = (target: DeliveryTarget): string =>
  target === 'global' ? GLOBAL_WEBHOOK_DEAD_LETTERS : WEBHOOK_SUBSCRIPTION;

/** undefined: the secret cannot be found now (retry later); null: send unsigned. */
export type SecretLookup = (instanceId: string, target: DeliveryTarget) => Promise<string | null | undefined>;

/** A line for the instance's own log (GET /instance/logs/:id). */
export type InstanceLogLine = (
  instanceId: string,
  level: 'warn' | 'error',
  message: string,
  context: Record<string, unknown>,
) => void;

export const DEFAULT_PIPELINE = 8;
/** Set on a batched request: the number of envelopes in the array. */
export const BATCH_SIZE_HEADER = 'x-zapwire-batch-size';

export interface DispatcherSettings {
  /** Requests in flight across all queues. Default 64. */
  readonly concurrency?: number;
  /** WEBHOOK_BATCH_MAX: events per POST (a JSON array, log order) when several wait. Default 1. */
  readonly batchMax?: number;
  /** WEBHOOK_PIPELINE: requests a queue has in flight at once on its connection. Default 8. */
  readonly pipeline?: number;
  /** How long the reader waits for a batch's events before it detaches the queues still sending. Default 250. */
  readonly directWaitMs?: number;
}

export interface DispatcherOptions {
  readonly store: Pick<EventStore, 'compareCheckpoints' | 'addDeadLetter'>;
  readonly queues: QueueStore;
  readonly backlog: BacklogReader;
  readonly sender: WebhookSender;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  readonly policy: OutagePolicy;
  readonly secretOf: SecretLookup;
  /** concurrency, batchMax, pipeline and directWaitMs (index.ts WebhookSettings). */
  readonly settings: DispatcherSettings;
  /** Events a detached queue reads from the log at a time. Default 100. */
  readonly pageSize?: number;
  /** Queue positions are written at most this often (many queues in one statement). Default 500. */
  readonly flushMs?: number;
  /** At shutdown, requests in flight get this long for their answers before they are cut. Default 2 000. */
  readonly shutdownGraceMs?: number;
  readonly instanceLog?: InstanceLogLine;
  readonly random?: () => number;
  /** The clock (tests move it for the maximum age). */
  readonly now?: () => number;
}

type Outcome = 'sent' | 'stopped';

/** The last request queued on a queue's connection, and its answer: the next one goes behind them. */
interface RequestChain {
  queued: Promise<void>;
  answered: Promise<unknown> | undefined;
}

export class WebhookDispatcher {
  private readonly queues = new Map<string, WebhookQueue>();
  private readonly semaphore: Semaphore;
  /** Aborts requests in flight (shutdown, lease lost). */
  private stopping = new AbortController();
  private running = false;
  private loaded: Promise<void> = Promise.resolve();
  /** The last stop, until it has finished. */
  private stopped: Promise<void> = Promise.resolve();
  private readonly dirty = new Set<WebhookQueue>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly now: () => number;
  private readonly compare = (a: Checkpoint, b: Checkpoint): number =>
    this.options.store.compareCheckpoints(a, b);

  constructor(private readonly options: DispatcherOptions) {
    setMaxListeners(0, this.stopping.signal);
    this.semaphore = new Semaphore(options.settings.concurrency ?? 64);
    this.now = options.now ?? Date.now;
  }

  /** True while this process works the queues (it holds the `sink-webhook` lease). */
  get active(): boolean {
    return this.running;
  }

  /**
   * Starts working the queues: loads every queue's stored position and resumes the ones behind. Called
   * when this process takes the `sink-webhook` lease; idempotent.
   */
  start(): Promise<void> {
    if (this.running) return this.loaded;
    this.running = true;
    // A stop still finishing (the lease went and came back) ends before the queues load again.
    this.loaded = this.stopped.then(() => {
      if (this.stopping.signal.aborted) {
        this.stopping = new AbortController();
        setMaxListeners(0, this.stopping.signal);
      }
      return this.load();
    });
    return this.loaded;
  }

  private async load(): Promise<void> {
    for (;;) {
      try {
        for (const record of await this.options.queues.all()) {
          const queue = this.queue(record.instanceId, record.target, record.cursor);
          queue.health = pickHealth(record);
          queue.storedAttached = record.attached;
          queue.storedCursor = record.cursor;
          if (record.attached) continue;
          queue.mode = 'detached';
          this.ensureRunning(queue);
        }
        return;
      } catch (error) {
        if (!this.running) return;
        this.options.logger.error({ err: error }, 'webhook: cannot read the queue positions; retrying');
        await sleep(1_000, this.stopping.signal);
      }
    }
  }

  /**
   * A batch of the log's deliveries, in log order. Resolves once each is delivered or dead-lettered, or its
   * queue is recorded as detached before it (it will read the event from the log itself). Throws when that
   * record cannot be written, so the subscription hands the batch over again.
   */
  async accept(deliveries: readonly Delivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    await this.start();
    const waits: Array<Promise<void>> = [];
    const fed = new Set<WebhookQueue>();
    const unrecorded = new Set<WebhookQueue>();
    for (const delivery of deliveries) {
      const queue = this.queue(delivery.instanceId, delivery.target);
      if (queue.forgotten) continue;
      if (queue.mode === 'detached') {
        this.countPassed(queue, delivery.position);
        // Safe to pass only once the table says the queue is behind.
        if (queue.storedAttached !== false) unrecorded.add(queue);
        continue;
      }
      if (this.options.store.compareCheckpoints(delivery.position, queue.taken) <= 0) continue;
      const item = new QueueItem(delivery);
      if (queue.mode === 'attaching') queue.holding.push(item);
      else {
        queue.window.push(item);
        queue.taken = delivery.position;
      }
      waits.push(item.safe);
      fed.add(queue);
    }
    for (const queue of fed) this.ensureRunning(queue);
    for (const queue of unrecorded) await this.persist(queue);
    if (waits.length === 0) return;
    const all = Promise.all(waits);
    const timer = new AbortController();
    const inTime = await Promise.race([
      all.then(() => true),
      sleep(
        this.options.settings.directWaitMs ?? 250,
        AbortSignal.any([timer.signal, this.stopping.signal]),
      ).then(() => false),
    ]);
    timer.abort();
    if (inTime) return;
    // A slow receiver: its queue goes on from the log, and the reader moves on now.
    for (const queue of fed) {
      if (queue.window.some((item) => !item.done) || queue.holding.length > 0) await this.detach(queue);
    }
    await all;
  }

  /**
   * Whether the reader should hand the queue its next event: not when the queue reads its own backlog and
   * the table says so (the event is only counted, for how far behind it is).
   */
  takes(instanceId: string, target: DeliveryTarget, position: Checkpoint): boolean {
    const queue = this.queues.get(queueKey(instanceId, target));
    if (!queue || queue.mode !== 'detached' || queue.storedAttached !== false || !this.running) return true;
    this.countPassed(queue, position);
    return false;
  }

  /**
   * An event the reader passed by a detached queue. One its backlog count already holds (at or before the
   * count's end) is not counted again; one after it is, or the count would freeze how far behind a paused
   * queue says it is at the moment someone first asked.
   */
  private countPassed(queue: WebhookQueue, position: Checkpoint): void {
    const counted = queue.counted;
    if (counted && this.options.store.compareCheckpoints(position, counted.upTo) <= 0) return;
    queue.passed += 1;
    queue.passedWhileCounting?.push(position);
  }

  /** A deleted instance: its queues stop and their rows go. */
  async forget(instanceId: string): Promise<void> {
    for (const target of ['instance', 'global'] as const) {
      const queue = this.queues.get(queueKey(instanceId, target));
      if (!queue) continue;
      queue.forgotten = true;
      for (const item of [...queue.window, ...queue.holding]) item.markSafe();
      queue.window = [];
      queue.holding = [];
      queue.wake();
      this.queues.delete(queue.key);
      this.dirty.delete(queue);
    }
    await this.options.queues.forget(instanceId);
  }

  /** The queue's state in memory, when this process works it. */
  queueState(instanceId: string, target: DeliveryTarget): QueueSnapshot | undefined {
    const queue = this.queues.get(queueKey(instanceId, target));
    if (!queue || !this.running) return undefined;
    const head = queue.head();
    const pending = queue.unsettled() + queue.holding.length;
    const counted = queue.counted;
    const fromCount =
      counted && this.options.store.compareCheckpoints(queue.taken, counted.upTo) < 0 ? counted : undefined;
    return {
      mode: queue.mode,
      health: queue.health,
      settled: queue.settled,
      behind:
        pending +
        (fromCount ? fromCount.events + queue.passed : queue.mode === 'detached' ? queue.passed : 0),
      behindExact: queue.mode !== 'detached' || (fromCount ? fromCount.exact : queue.passed === 0),
      oldestUndelivered: head?.delivery.storedAt,
      nextProbeAt: queue.health.state === 'paused' ? new Date(queue.nextProbeAt) : undefined,
      url: head?.delivery.url,
    };
  }

  /** Every queue this process works. */
  queueKeys(): Array<{ instanceId: string; target: DeliveryTarget }> {
    return [...this.queues.values()].map((q) => ({ instanceId: q.instanceId, target: q.target }));
  }

  /** Counts a detached queue's backlog in the log (bounded), for the API and metrics. */
  async countBacklog(instanceId: string, target: DeliveryTarget, max = 10_000): Promise<void> {
    const queue = this.queues.get(queueKey(instanceId, target));
    if (!queue || queue.mode === 'attached' || queue.counted) return;
    const meanwhile: Checkpoint[] = [];
    queue.passedWhileCounting = meanwhile;
    try {
      const { upTo, events, exact } = await this.options.backlog.count(queue, queue.taken, max);
      queue.counted = { upTo, events, exact };
      // What the reader passed during the count and the count did not reach.
      queue.passed = meanwhile.filter((p) => this.options.store.compareCheckpoints(p, upTo) > 0).length;
    } finally {
      queue.passedWhileCounting = undefined;
    }
  }

  /**
   * Stops working the queues. `graceful` (shutdown): requests in flight get `shutdownGraceMs` for their
   * answers, and every queue's position is written. Otherwise (the lease went to another process) they are
   * cut at once and nothing more is written: the queues are that process's now.
   */
  stop(graceful = true): Promise<void> {
    if (!this.running) return this.stopped.then(() => this.flushing);
    this.running = false;
    this.stopped = this.loaded.then(() => this.shutDown(graceful));
    return this.stopped;
  }

  private async shutDown(graceful: boolean): Promise<void> {
    const workers = [...this.queues.values()].map((q) => {
      q.wake();
      return q.worker;
    });
    const grace = graceful ? (this.options.shutdownGraceMs ?? 2_000) : 0;
    const settledInTime = await Promise.race([
      Promise.all(workers).then(() => true),
      sleep(grace).then(() => false),
    ]);
    if (!settledInTime) this.stopping.abort();
    await Promise.all(workers);
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (graceful) {
      for (const queue of this.queues.values()) {
        queue.compact();
        if (queue.storedAttached !== undefined || queue.mode !== 'attached' || queue.unsettled() > 0) {
          // A queue stopped with events unsent resumes from the log at the next start.
          if (queue.unsettled() > 0 && queue.mode === 'attached') queue.mode = 'detached';
          this.dirty.add(queue);
        }
      }
      await this.flush().catch((error: unknown) =>
        this.options.logger.error({ err: error }, 'webhook: could not write the queue positions at shutdown'),
      );
    } else {
      this.dirty.clear();
    }
    for (const queue of this.queues.values()) {
      for (const item of [...queue.window, ...queue.holding]) item.markSafe();
    }
    this.queues.clear();
    this.stopping.abort();
  }

  // ---- queues and their workers ----

  private queue(instanceId: string, target: DeliveryTarget, cursor?: Checkpoint): WebhookQueue {
    const key = queueKey(instanceId, target);
    let queue = this.queues.get(key);
    if (!queue) {
      queue = new WebhookQueue(instanceId, target, cursor ?? ('' as Checkpoint));
      this.queues.set(key, queue);
    }
    return queue;
  }

  private ensureRunning(queue: WebhookQueue): void {
    if (queue.worker || !this.running || queue.forgotten) return;
    queue.worker = this.work(queue)
      .catch((error: unknown) =>
        this.options.logger.error({ err: error, instanceId: queue.instanceId }, 'webhook queue failed'),
      )
      .finally(() => {
        queue.worker = undefined;
        // Work that arrived while the worker was finishing.
        if (this.running && !queue.forgotten && this.hasWork(queue)) this.ensureRunning(queue);
      });
  }

  private hasWork(queue: WebhookQueue): boolean {
    return queue.mode !== 'attached' || queue.window.some((item) => !item.done && !item.sending);
  }

  private async work(queue: WebhookQueue): Promise<void> {
    while (this.running && !queue.forgotten) {
      queue.compact();
      // A detached queue's cursor is where a restart resumes; an attached one's is the reader's checkpoint.
      if (queue.mode !== 'attached') this.markDirty(queue);
      if (queue.health.state === 'paused') {
        if ((await this.probe(queue)) === 'stopped') return;
        continue;
      }
      const sent = await this.sendWindow(queue);
      if (sent === 'stopped') return;
      if (sent === 'sent') continue;
      if (queue.mode === 'attached') return;
      const filled = await this.fill(queue);
      if (filled === 'idle') return;
    }
  }

  /**
   * Reads the queue's next events from the log. With nothing left unsettled, it first enters `attaching`,
   * so that if the read finds nothing new the reader's events since then are waiting in `holding`.
   */
  private async fill(queue: WebhookQueue): Promise<'more' | 'idle'> {
    const attaching = queue.window.every((item) => item.done) && queue.holding.length === 0;
    if (attaching) queue.mode = 'attaching';
    let page;
    try {
      page = await this.options.backlog.read(queue, this.options.pageSize ?? 100);
    } catch (error) {
      this.options.logger.error(
        { err: error, instanceId: queue.instanceId },
        'webhook: cannot read the queue backlog from the log; retrying',
      );
      if (queue.mode === 'attaching') this.cancelAttach(queue);
      await sleep(1_000, this.stopping.signal);
      return 'more';
    }
    if (!this.running || queue.forgotten) return 'idle';
    if (page.deleted) {
      await this.forget(queue.instanceId);
      return 'idle';
    }
    for (const delivery of page.deliveries) queue.window.push(new QueueItem(delivery));
    if (this.options.store.compareCheckpoints(page.next, queue.taken) > 0) queue.taken = page.next;
    if (page.deliveries.length > 0 || !page.caughtUp) {
      if (queue.mode === 'attaching') this.cancelAttach(queue);
      return 'more';
    }
    if (queue.mode !== 'attaching') return 'more';
    // Caught up with nothing pending: the reader feeds it from here on.
    queue.mode = 'attached';
    queue.passed = 0;
    queue.counted = undefined;
    for (const item of queue.holding) {
      if (this.options.store.compareCheckpoints(item.delivery.position, queue.taken) > 0) {
        queue.window.push(item);
        queue.taken = item.delivery.position;
      } else item.finish();
    }
    queue.holding = [];
    queue.compact();
    this.markDirty(queue);
    return queue.window.length > 0 ? 'more' : 'idle';
  }

  /** The read found more: the queue stays detached; what the reader handed over meanwhile it reads itself. */
  private cancelAttach(queue: WebhookQueue): void {
    void this.detach(queue).catch(() => undefined);
  }

  /**
   * Records the queue as detached at its settled position, then lets the reader pass the events it handed
   * over (the queue reads them from the log itself). Rejects when the record cannot be written: the
   * reader then hands its batch over again later.
   */
  private async detach(queue: WebhookQueue): Promise<void> {
    const held = queue.holding;
    queue.holding = [];
    if (queue.mode !== 'detached') {
      if (queue.mode === 'attached') queue.passed = 0;
      queue.mode = 'detached';
      this.ensureRunning(queue);
    }
    // Already recorded as behind (an attach that found more to read): nothing to write.
    if (queue.storedAttached !== false) await this.persist(queue);
    for (const item of [...queue.window, ...held]) item.markSafe();
  }

  /**
   * The next request for the queue: the first events not sent yet, one, or (WEBHOOK_BATCH_MAX) several for
   * the same URL. Events past the maximum age are dead-lettered here instead of sent.
   */
  private async nextRequest(queue: WebhookQueue): Promise<QueueItem[] | undefined> {
    const batchMax = queue.sendAlone ? 1 : (this.options.settings.batchMax ?? 1);
    const request: QueueItem[] = [];
    for (const item of queue.window) {
      if (item.done || item.sending) continue;
      if (isExpired(this.options.policy, item.delivery.storedAt, this.now())) {
        await this.deadLetter(queue, item, 'expired', `older than WEBHOOK_MAX_AGE, not sent`, undefined);
        continue;
      }
      if (
        request.length > 0 &&
        (request.length >= batchMax || item.delivery.url !== request[0]!.delivery.url)
      )
        break;
      request.push(item);
    }
    return request.length > 0 ? request : undefined;
  }

  /**
   * Sends the queue's events with up to `pipeline` requests in flight on its connection, in log order: a
   * sliding window (the next request goes out as soon as an answer comes back), so a busy number is limited
   * by the receiver, not by round trips. Stops at the first failed request and lets the ones behind it
   * finish; then that failure decides: refused → a single event is dead-lettered (a refused batch goes on
   * one by one); receiver down → the queue pauses and is probed. Failed requests behind it are not charged:
   * they go again. 'idle' when there was nothing to send.
   */
  private async sendWindow(queue: WebhookQueue): Promise<Outcome | 'idle'> {
    const pipeline = (): number =>
      queue.sendAlone ? 1 : (this.options.settings.pipeline ?? DEFAULT_PIPELINE);
    const inFlight = new Set<Promise<void>>();
    let failed: { request: readonly QueueItem[]; result: SendResult & { ok: false } } | undefined;
    let stopped = false;
    let sentAny = false;
    let wake: (() => void) | undefined;
    const chain: RequestChain = { queued: Promise.resolve(), answered: undefined };
    const earlier = (a: readonly QueueItem[], b: readonly QueueItem[]): boolean =>
      this.options.store.compareCheckpoints(a[0]!.delivery.position, b[0]!.delivery.position) < 0;
    for (;;) {
      while (!failed && !stopped && this.running && !queue.forgotten && inFlight.size < pipeline()) {
        // A queue that reads its own backlog records its position before it runs a window ahead of it: a
        // crash then sends again at most what was in flight or answered since (two windows).
        if (queue.mode !== 'attached' && queue.sentSinceRecorded(this.compare) >= pipeline()) {
          queue.compact();
          await this.persist(queue).catch(() => undefined);
          if (queue.sentSinceRecorded(this.compare) >= pipeline()) break;
        }
        const request = await this.nextRequest(queue);
        if (!request) break;
        sentAny = true;
        for (const item of request) item.sending = true;
        const done = this.attemptChained(queue, request, chain).then((result) => {
          if (result.ok) {
            for (const item of request) this.delivered(queue, item);
            // The refused batch's head went alone and got through: batches again.
            queue.sendAlone = false;
            return;
          }
          for (const item of request) item.sending = false;
          if (result.aborted) stopped = true;
          // The first failure in log order decides (a request behind it may fail first).
          else if (!failed || earlier(request, failed.request)) failed = { request, result };
        });
        inFlight.add(done);
        void done.finally(() => {
          inFlight.delete(done);
          wake?.();
        });
      }
      if (inFlight.size === 0) break;
      await new Promise<void>((resolve) => (wake = resolve));
      queue.compact();
      if (queue.mode !== 'attached') this.markDirty(queue);
    }
    if (stopped) return 'stopped';
    if (!sentAny) return 'idle';
    if (!failed) {
      queue.sendAlone = false;
      if (queue.health.state !== 'delivering')
        this.setHealth(queue, { ...queue.health, state: 'delivering', since: undefined, failures: 0 });
      return 'sent';
    }
    const { request, result } = failed;
    this.options.metrics.retriedOne('webhook', labelOf(queue, request[0]!));
    const verdict = verdictOf(result);
    if (verdict.kind === 'refused' && request.length > 1) {
      queue.sendAlone = true;
      return 'sent';
    }
    await this.judge(queue, request[0]!, result, verdict);
    return 'sent';
  }

  /** A down receiver's queue waits for its probe time, then sends its head alone. */
  private async probe(queue: WebhookQueue): Promise<Outcome> {
    const wait = queue.nextProbeAt - this.now();
    if (wait > 0) {
      await queue.sleep(wait);
      if (!this.running || queue.forgotten) return 'stopped';
      if (queue.nextProbeAt > this.now()) return 'sent';
    }
    let head = queue.head();
    if (!head) {
      const filled = await this.fill(queue);
      head = queue.head();
      if (!head) {
        // Nothing to send any more (the backlog was deleted, or replayed by other means).
        this.setHealth(queue, HEALTHY);
        return filled === 'idle' ? 'stopped' : 'sent';
      }
    }
    if (isExpired(this.options.policy, head.delivery.storedAt, this.now())) {
      await this.deadLetter(queue, head, 'expired', 'older than WEBHOOK_MAX_AGE, not sent', undefined);
      return 'sent';
    }
    head.sending = true;
    const result = await this.attemptChained(queue, [head], {
      queued: Promise.resolve(),
      answered: undefined,
    });
    head.sending = false;
    if (!result.ok && result.aborted) return 'stopped';
    if (result.ok) {
      this.delivered(queue, head);
      this.resumed(queue);
      return 'sent';
    }
    this.options.metrics.retriedOne('webhook', labelOf(queue, head));
    await this.judge(queue, head, result, verdictOf(result));
    return 'sent';
  }

  /** A failed attempt of one event: dead-lettered when refused, the queue paused when the receiver is down. */
  private async judge(
    queue: WebhookQueue,
    item: QueueItem,
    result: SendResult & { ok: false },
    verdict: Verdict,
  ): Promise<void> {
    const at = new Date(this.now());
    const seen = {
      lastError: result.error,
      lastStatusCode: result.statusCode ?? undefined,
      lastAttemptAt: at,
    };
    if (verdict.kind === 'refused') {
      await this.deadLetter(
        queue,
        item,
        'refused',
        `refused by the receiver: ${result.error}`,
        result.statusCode,
      );
      if (queue.health.state === 'paused') this.resumed(queue);
      this.setHealth(queue, {
        ...queue.health,
        ...seen,
        state: 'refusing',
        since: queue.health.state === 'refusing' ? queue.health.since : at,
        failures: 0,
      });
      return;
    }
    if (verdict.kind !== 'down') return;
    const failures = queue.health.state === 'paused' ? queue.health.failures + 1 : 1;
    queue.nextProbeAt =
      this.now() + probeDelay(this.options.policy, failures, verdict.retryAfterMs, this.options.random);
    if (queue.health.state !== 'paused') {
      this.options.logger.warn(
        { instanceId: queue.instanceId, target: queue.target, error: result.error },
        'webhook receiver down: its queue pauses and keeps its position',
      );
      this.options.instanceLog?.(
        queue.instanceId,
        'warn',
        `webhook receiver down (${result.error}): events are kept in order and sent when it answers again`,
        { sink: 'webhook', target: queue.target },
      );
    }
    this.setHealth(queue, {
      ...queue.health,
      ...seen,
      state: 'paused',
      since: queue.health.state === 'paused' ? queue.health.since : at,
      failures,
    });
    // Paused: the reader must not wait for this queue; it reads its events itself when it resumes.
    if (queue.mode !== 'detached') await this.detach(queue);
  }

  private resumed(queue: WebhookQueue): void {
    if (queue.health.state !== 'paused') return;
    const since = queue.health.since;
    this.options.logger.info(
      { instanceId: queue.instanceId, target: queue.target, downSince: since },
      'webhook receiver answers again: draining its queue',
    );
    this.setHealth(queue, { ...queue.health, state: 'delivering', since: undefined, failures: 0 });
  }

  private delivered(queue: WebhookQueue, item: QueueItem): void {
    item.finish();
    const at = new Date(this.now());
    queue.health = { ...queue.health, lastDeliveredAt: at, lastAttemptAt: at };
    this.options.metrics.deliveredOne('webhook', labelOf(queue, item), item.delivery.storedAt, at.getTime());
  }

  private async deadLetter(
    queue: WebhookQueue,
    item: QueueItem,
    reason: 'refused' | 'expired',
    error: string,
    statusCode: number | null | undefined,
  ): Promise<void> {
    const { delivery } = item;
    this.options.logger.warn(
      { instanceId: queue.instanceId, target: queue.target, eventId: delivery.eventId, reason, error },
      'webhook delivery dead-lettered',
    );
    await this.retrying(() =>
      this.options.store.addDeadLetter(
        deadLetterSubscriptionOf(queue.target),
        recordedEventOf(delivery),
        error,
        1,
        {
          instanceId: queue.instanceId,
          detail: {
            target: queue.target,
            url: delivery.url,
            eventName: delivery.eventName,
            reason,
            statusCode: statusCode ?? null,
            storedAt: delivery.storedAt.toISOString(),
          },
        },
      ),
    );
    this.options.metrics.deadLetteredOne('webhook', labelOf(queue, item));
    item.finish();
  }

  private setHealth(queue: WebhookQueue, health: QueueHealth): void {
    const changed = health.state !== queue.health.state;
    queue.health = health;
    this.markDirty(queue, changed);
  }

  // ---- requests ----

  /**
   * Sends one request over the queue's connection, queued behind the one before it in `chain` (the secret
   * lookup and the concurrency cap come first, and must not reorder them); its timeout runs from the answer
   * to the one before it.
   */
  private attemptChained(
    queue: WebhookQueue,
    request: readonly QueueItem[],
    chain: RequestChain,
  ): Promise<SendResult> {
    let queued!: () => void;
    const thisQueued = new Promise<void>((resolve) => (queued = resolve));
    const after = chain.queued;
    const timeoutFrom = chain.answered;
    chain.queued = thisQueued;
    const result = after.then(() => this.attempt(queue, request, queued, timeoutFrom)).finally(queued);
    chain.answered = result;
    return result;
  }

  /** One request: one event's body, or several as one JSON array (log order). */
  private async attempt(
    queue: WebhookQueue,
    request: readonly QueueItem[],
    onQueued: () => void,
    timeoutFrom: Promise<unknown> | undefined,
  ): Promise<SendResult> {
    const first = request[0]!.delivery;
    let secret: string | null | undefined;
    try {
      secret = await this.options.secretOf(first.instanceId, first.target);
    } catch (error) {
      return { ok: false, statusCode: null, error: `secret lookup failed: ${String(error)}`, durationMs: 0 };
    }
    if (secret === undefined) {
      return {
        ok: false,
        statusCode: null,
        error: 'instance not found in the directory (yet)',
        durationMs: 0,
      };
    }
    const deliveries = request.map((item) => item.delivery);
    const batched = deliveries.length > 1;
    const body = batched ? `[${deliveries.map((d) => d.body).join(',')}]` : first.body;
    const headers: Record<string, string> = {
      [EVENT_ID_HEADER]: deliveries.map((d) => d.eventId).join(','),
      [DELIVERY_ID_HEADER]: deliveries.map((d) => d.eventId).join(','),
      'x-zapwire-event': [...new Set(deliveries.map((d) => d.eventName))].join(','),
    };
    if (batched) headers[BATCH_SIZE_HEADER] = String(deliveries.length);
    Object.assign(headers, signatureHeaders(body, secret));
    const release = await this.semaphore.acquire();
    try {
      return await this.options.sender.send({
        url: first.url,
        body,
        headers,
        timeoutMs: this.options.policy.timeoutMs,
        signal: this.stopping.signal,
        // One connection per queue: pipelined requests reach the receiver in the queue's order.
        orderKey: queue.key,
        trusted: queue.target === 'global',
        onQueued,
        ...(timeoutFrom ? { timeoutFrom } : {}),
      });
    } finally {
      release();
    }
  }

  // ---- positions in the table ----

  /** Writes the queue's row soon (coalesced with others); `now` writes it with the next flush at once. */
  private markDirty(queue: WebhookQueue, now = false): void {
    if (!this.running || queue.forgotten) return;
    const record = queue.record();
    // Attached queues with nothing new to say need no row (the reader's checkpoint covers them).
    if (queue.mode === 'attached' && queue.storedAttached === undefined && record.state === 'delivering')
      return;
    this.dirty.add(queue);
    if (now) void this.flush().catch(() => undefined);
    else
      this.flushTimer ??= setTimeout(
        () => void this.flush().catch(() => undefined),
        this.options.flushMs ?? 500,
      );
  }

  /** Writes the queue's row with a flush that starts after this call; rejects when it cannot be written. */
  private persist(queue: WebhookQueue): Promise<void> {
    this.dirty.add(queue);
    return this.flush();
  }

  private flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const run = this.flushing.then(async () => {
      const batch = [...this.dirty].filter((q) => !q.forgotten);
      this.dirty.clear();
      if (batch.length === 0) return;
      const records = batch.map((q) => ({ queue: q, record: q.record() }));
      try {
        await this.options.queues.save(records.map((r) => r.record));
      } catch (error) {
        for (const { queue } of records) this.dirty.add(queue);
        this.options.logger.error({ err: error }, 'webhook: could not write queue positions; retrying');
        this.flushTimer ??= setTimeout(() => void this.flush().catch(() => undefined), 1_000);
        throw error;
      }
      for (const { queue, record } of records) {
        queue.storedAttached = record.attached;
        queue.storedCursor = record.cursor;
      }
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  /** A dead-letter write retries until it lands or the dispatcher stops: losing it would lose the event. */
  private async retrying(write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await write();
        return;
      } catch (error) {
        if (this.stopping.signal.aborted) throw error;
        this.options.logger.error({ err: error }, 'webhook: dead-letter write failed; retrying');
        await sleep(Math.min(5_000, 100 * 2 ** attempt), this.stopping.signal);
      }
    }
  }
}

export interface QueueSnapshot {
  readonly mode: WebhookQueue['mode'];
  readonly health: QueueHealth;
  readonly settled: Checkpoint;
  /** Events not delivered yet (an estimate while the queue reads its backlog: see `behindExact`). */
  readonly behind: number;
  readonly behindExact: boolean;
  readonly oldestUndelivered: Date | undefined;
  readonly nextProbeAt: Date | undefined;
  /** Where the head goes. */
  readonly url: string | undefined;
}

function labelOf(queue: WebhookQueue, item: QueueItem): { id: string; name: string } {
  return { id: queue.instanceId, name: item.delivery.instanceName };
}

function pickHealth(record: QueueHealth): QueueHealth {
  return {
    state: record.state,
    since: record.since,
    failures: record.failures,
    lastError: record.lastError,
    lastStatusCode: record.lastStatusCode,
    lastAttemptAt: record.lastAttemptAt,
    lastDeliveredAt: record.lastDeliveredAt,
  };
}
