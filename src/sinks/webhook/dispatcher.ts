/**
 * Sends webhook deliveries. One ordered queue per (instance, target), with its own connection: up to
 * `pipeline` first attempts from the head of the queue go out pipelined on it, in log order, so an
 * instance's events reach the receiver in log order. A failed one is retried alone, and nothing else of
 * the queue goes out until it is delivered or dead-lettered (the ones already sent behind it may have been
 * delivered first). Queues are independent: a failing endpoint only stalls its own queue; a global cap
 * bounds the requests in flight across all of them.
 *
 * Where deliveries come from: the `sink-webhook` subscription hands each batch of the log to `accept`.
 * Events of a queue with nothing waiting are sent straight from memory, without a row; `accept` resolves
 * (and the subscription's checkpoint moves past the batch) once each of them is delivered or **parked as a
 * row**: at its first failed attempt, or when the batch has waited `directWaitMs` for a slow receiver, the
 * queue's undelivered events are written to zw_webhook_deliveries in order, and the queue goes on from
 * there. A queue that has rows waiting takes new events as rows too, behind them. So rows exist only for
 * retries, slow receivers, dead letters and redeliveries, a slow instance holds the log's reader back by
 * at most `directWaitMs`, and nothing is lost on a crash: an event is either delivered, or in a row, or
 * after the checkpoint (read again).
 *
 * Retry rule: a failed attempt is retried after an exponential backoff with jitter, unless the answer was a
 * 4xx other than 408/429; after the last attempt the delivery is dead (delivery log + store dead letter) and
 * the queue moves on. During a long outage a queue therefore dead-letters about one event per retry cycle
 * and holds the rest, which flow in order as soon as the endpoint answers again.
 *
 * Bounds: rows waiting per queue (`maxPendingPerQueue`; beyond it new events are not queued for that
 * webhook and the instance's log says so), dead rows per instance (`maxDeadPerInstance`, oldest removed),
 * and the bodies held in memory across all queues (`memoryMaxBytes`; beyond it rows stay in the table
 * until there is room).
 */
import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { EventStore, RecordedEvent } from '../../store/port.ts';
import { backoffDelay, sleep } from '../backoff.ts';
import type { SinkMetrics } from '../metrics.ts';
import {
  compareIds,
  type AttemptOutcome,
  type DeliveryLog,
  type DeliveryRow,
  type DeliveryTarget,
  pendingRow,
  type NewDelivery,
} from './delivery-log.ts';
import { isRetryable, type SendResult, type WebhookSender } from './sender.ts';
import { DELIVERY_ID_HEADER, EVENT_ID_HEADER, signatureHeaders } from './signature.ts';
import { Semaphore } from '../../async/semaphore.ts';

export interface WebhookRetryPolicy {
  /** Attempts per delivery, the first included (WEBHOOK_MAX_ATTEMPTS, default 8). */
  readonly maxAttempts: number;
  /** Per request (WEBHOOK_TIMEOUT_MS, default 10 000). */
  readonly timeoutMs: number;
  /** First retry delay (WEBHOOK_BACKOFF_BASE_MS, default 1 000); doubles per attempt. */
  readonly backoffBaseMs: number;
  /** Longest delay between attempts (WEBHOOK_BACKOFF_MAX_MS, default 300 000). */
  readonly backoffMaxMs: number;
}

export const DEFAULT_RETRY_POLICY: WebhookRetryPolicy = {
  maxAttempts: 8,
  timeoutMs: 10_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 300_000,
};

/** The dead-letter subscription names in the store, per target. */
export const WEBHOOK_SUBSCRIPTION = 'sink-webhook';
export const GLOBAL_WEBHOOK_DEAD_LETTERS = 'sink-webhook-global';

/** undefined: the secret cannot be found now (retry later); null: send unsigned. */
export type SecretLookup = (instanceId: string, target: DeliveryTarget) => Promise<string | null | undefined>;

/** A line for the instance's own log (GET /instance/logs/:id): a cap was hit. */
export type InstanceLogLine = (instanceId: string, message: string, context: Record<string, unknown>) => void;

export const DEFAULT_MAX_PENDING_PER_QUEUE = 10_000;
export const DEFAULT_PIPELINE = 8;
export const DEFAULT_MAX_DEAD_PER_INSTANCE = 1_000;
export const DEFAULT_MEMORY_MAX_BYTES = 64 * 1024 * 1024;

export interface DispatcherOptions {
  readonly log: DeliveryLog;
  readonly sender: WebhookSender;
  readonly store: EventStore;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  readonly policy: WebhookRetryPolicy;
  readonly secretOf: SecretLookup;
  /** Requests in flight across all queues. Default 64. */
  readonly concurrency?: number;
  /** Rows a queue loads at a time. Default 100. */
  readonly pageSize?: number;
  /**
   * WEBHOOK_BATCH_MAX: up to this many waiting events of one queue go out in one POST, as a JSON array of
   * envelopes in log order. Default 1: one event per request.
   */
  readonly batchMax?: number;
  /**
   * WEBHOOK_PIPELINE: requests a queue has in flight at once, pipelined in log order on the queue's one
   * connection (the sender's `pipelining` must allow as many), so they reach the receiver in log order; a
   * failed one is retried after those sent behind it. 1: the next request waits for the answer to the
   * previous one (order kept across retries too). Default 8.
   */
  readonly pipeline?: number;
  /** How long a batch of the log waits for its events to be delivered before parking the rest as rows. Default 250. */
  readonly directWaitMs?: number;
  /** WEBHOOK_MAX_PENDING: rows waiting per (instance, target). Default 10 000. */
  readonly maxPendingPerQueue?: number;
  /** WEBHOOK_MAX_DEAD: dead rows kept per instance, newest first. Default 1 000. */
  readonly maxDeadPerInstance?: number;
  /** WEBHOOK_MEMORY_MAX_MB: delivery bodies held in memory across all queues. Default 64 MiB. */
  readonly memoryMaxBytes?: number;
  /** Looks for rows other processes queued (and rows after a lease hand-over) this often. Default 10 s. */
  readonly sweepMs?: number;
  /** Where a hit cap is reported for the instance. */
  readonly instanceLog?: InstanceLogLine;
  readonly random?: () => number;
}

/** Coalesces "delivered" updates: one UPDATE for many rows keeps the log off the hot path. */
class DeliveredMarks {
  private pending: Array<{ outcome: AttemptOutcome; written: () => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: DeliveryLog,
    private readonly logger: Logger,
  ) {}

  /** `written` runs once the row's update is done (or failed: the row then stays pending and goes again). */
  push(outcome: AttemptOutcome, written: () => void): void {
    this.pending.push({ outcome, written });
    if (this.pending.length >= 200) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), 25);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return this.flushing;
    this.flushing = this.flushing.then(async () => {
      try {
        await this.log.markDelivered(batch.map((b) => b.outcome));
      } catch (error) {
        // The requests succeeded; the rows stay 'pending' and go out again (at-least-once).
        this.logger.error({ err: error, count: batch.length }, 'webhook: could not record delivered rows');
      }
      for (const b of batch) b.written();
    });
    return this.flushing;
  }
}

/** How an event taken from the log left memory. */
type Settlement = 'delivered' | 'parked' | 'dropped' | 'abandoned';

interface Item {
  /** `id` is '' while the delivery exists only in memory (taken from the log, not parked as a row). */
  row: DeliveryRow;
  readonly bytes: number;
  /** Set for an event taken from the log: `accept` waits for it. */
  readonly settle?: (how: Settlement) => void;
  settled?: Settlement;
  /** The successful answer, kept for a row that parking writes after the event was delivered. */
  success?: AttemptOutcome;
}

interface Queue {
  readonly instanceId: string;
  readonly target: DeliveryTarget;
  /** Deliveries to send, in order; the head is the one being sent. */
  buffer: Item[];
  /** Body bytes held in `buffer`. */
  bytes: number;
  /** True while `buffer` holds every pending row of this queue that this process has not finished. */
  synced: boolean;
  /** While a table scan runs: the rows handed over meanwhile, merged with the scan's result after. */
  scanning: DeliveryRow[] | undefined;
  /** Bumped by notify(): a scan that overlapped one cannot conclude the queue is synced. */
  notified: number;
  /** Delivered here, "delivered" not written yet: a scan must not pick them up again. */
  readonly unflushed: Set<string>;
  /** Row ids recently finished here (bounded), so a late handover of the same row is not sent twice. */
  readonly finished: Set<string>;
  running: Promise<void> | undefined;
  /** Parking runs one at a time per queue, so rows get ids in queue order. */
  parking: Promise<void>;
  /** Wakes the queue's retry wait early (stop, forget). */
  wake: AbortController | undefined;
  instanceName: string | undefined;
}

/** Deliveries a queue holds in memory; beyond that they wait in the table. */
const MAX_BUFFER = 1_000;
const FINISHED_MEMORY = 2_000;
/** Per item, besides its body: the row's other fields and the bookkeeping. */
const ITEM_OVERHEAD_BYTES = 512;
/** A cap reported to an instance's log at most this often (per cap). */
const CAP_REPORT_INTERVAL_MS = 60_000;
/** Set on a batched request: the number of envelopes in the array. */
export const BATCH_SIZE_HEADER = 'x-zapwire-batch-size';

const key = (instanceId: string, target: DeliveryTarget): string => `${target}\u0000${instanceId}`;

/** Deliveries grouped by their queue (instance and target), each group in the order given. */
function byQueue<T extends { readonly instanceId: string; readonly target: DeliveryTarget }>(
  items: readonly T[],
): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item.instanceId, item.target);
    const list = groups.get(k);
    if (list) list.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

function itemOf(row: DeliveryRow, settle?: (how: Settlement) => void): Item {
  return { row, bytes: row.body.length + ITEM_OVERHEAD_BYTES, ...(settle ? { settle } : {}) };
}

function newDeliveryOf(row: DeliveryRow): NewDelivery {
  return {
    instanceId: row.instanceId,
    target: row.target,
    url: row.url,
    eventId: row.eventId,
    eventName: row.eventName,
    stream: row.stream,
    streamPosition: row.streamPosition,
    position: row.position,
    eventType: row.eventType,
    storedAt: row.storedAt,
    body: row.body,
  };
}

export class WebhookDispatcher {
  private readonly queues = new Map<string, Queue>();
  private readonly semaphore: Semaphore;
  private readonly marks: DeliveredMarks;
  private readonly stopping = new AbortController();
  private held = 0;
  private activeSince: number | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** After the first sweep: a queue not seen with rows then starts out synced (nothing of it waits in the table). */
  private swept = false;
  private firstSweep: Promise<void> = Promise.resolve();
  private readonly reported = new Map<string, number>();

  constructor(private readonly options: DispatcherOptions) {
    // Every request in flight listens on this one signal (removed when it ends); dozens at once are normal.
    setMaxListeners(0, this.stopping.signal);
    this.semaphore = new Semaphore(options.concurrency ?? 64);
    this.marks = new DeliveredMarks(options.log, options.logger);
  }

  /** Body bytes held in memory across all queues (bounded by `memoryMaxBytes`). */
  get bufferedBytes(): number {
    return this.held;
  }

  /** True once this process works the queues (it holds the `sink-webhook` lease). */
  get active(): boolean {
    return this.activeSince !== undefined;
  }

  /**
   * Starts working the queues: resumes every queue with rows waiting, and looks for rows queued elsewhere
   * every `sweepMs`. Called once this process holds the `sink-webhook` lease; idempotent.
   */
  start(): void {
    if (this.activeSince !== undefined || this.stopping.signal.aborted) return;
    this.activeSince = Date.now();
    const sweep = async (): Promise<void> => {
      try {
        for (const { instanceId, target } of await this.options.log.pendingQueues()) {
          const queue = this.queues.get(key(instanceId, target));
          // A queue busy with its buffer reads the table again when the buffer runs dry.
          if (!queue || queue.buffer.length === 0) this.notify(instanceId, target);
        }
        this.swept = true;
      } catch (error) {
        this.options.logger.error({ err: error }, 'webhook: cannot list the waiting deliveries; retrying');
      }
    };
    this.firstSweep = sweep();
    this.sweepTimer = setInterval(() => void sweep(), this.options.sweepMs ?? 10_000);
    this.sweepTimer.unref();
  }

  /** Rows of this queue may be waiting in the table that this process does not hold: scan for them. */
  notify(instanceId: string, target: DeliveryTarget): void {
    const queue = this.queue(instanceId, target);
    if (!queue) return;
    queue.synced = false;
    queue.notified += 1;
    this.ensureRunning(queue);
  }

  /**
   * A batch of deliveries from the log, in log order. Resolves once each one is delivered or parked as a
   * row (or dropped: a deleted instance, a full queue); throws when parking failed, so the subscription
   * hands the batch over again.
   */
  async accept(deliveries: readonly NewDelivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    // Until the first sweep has said which queues have rows waiting, every queue would have to scan first.
    await this.firstSweep;
    const toStore: NewDelivery[] = [];
    const waits: Array<Promise<Settlement>> = [];
    const direct: Queue[] = [];
    const now = new Date();
    const memoryMax = this.options.memoryMaxBytes ?? DEFAULT_MEMORY_MAX_BYTES;
    for (const list of byQueue(deliveries).values()) {
      const queue = this.queue(list[0]!.instanceId, list[0]!.target);
      const items = list.map((d) => {
        let settle!: (how: Settlement) => void;
        const settled = new Promise<Settlement>((resolve) => (settle = resolve));
        const item = itemOf(pendingRow(d, '', now), (how) => {
          if (item.settled) return;
          item.settled = how;
          settle(how);
        });
        return { item, settled };
      });
      const bytes = items.reduce((sum, { item }) => sum + item.bytes, 0);
      // Straight from memory only into an idle queue: behind rows (a retry, a slow receiver) these would
      // only wait to be parked, holding the log's reader back each time.
      if (
        queue &&
        queue.synced &&
        !queue.scanning &&
        queue.buffer.length === 0 &&
        items.length <= MAX_BUFFER &&
        this.held + bytes <= memoryMax
      ) {
        this.push(
          queue,
          items.map(({ item }) => item),
        );
        waits.push(...items.map(({ settled }) => settled));
        direct.push(queue);
        this.ensureRunning(queue);
      } else {
        // Rows wait in this queue (or there is no room in memory): these go behind them, as rows.
        toStore.push(...list);
      }
    }
    if (toStore.length > 0) await this.store(toStore);
    if (waits.length === 0) return;
    const all = Promise.all(waits);
    const waited = new AbortController();
    await Promise.race([
      all,
      sleep(this.options.directWaitMs ?? 250, AbortSignal.any([waited.signal, this.stopping.signal])),
    ]);
    waited.abort();
    // What is not delivered by now is parked, so the log's reader goes on without waiting for it.
    const parked = await Promise.allSettled(direct.map((queue) => this.park(queue)));
    const outcomes = await all;
    const failed = parked.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (failed || outcomes.includes('abandoned')) {
      throw new Error(
        `webhook: could not park undelivered events (${String(failed?.reason ?? 'abandoned')}); the batch goes again`,
      );
    }
  }

  /** Rows already stored (a redelivery): sent without reading them back. */
  handoff(rows: readonly DeliveryRow[]): void {
    const memoryMax = this.options.memoryMaxBytes ?? DEFAULT_MEMORY_MAX_BYTES;
    for (const list of byQueue(rows).values()) {
      const queue = this.queue(list[0]!.instanceId, list[0]!.target);
      if (!queue) continue;
      const bytes = list.reduce((sum, r) => sum + r.body.length + ITEM_OVERHEAD_BYTES, 0);
      if (queue.scanning) queue.scanning.push(...list);
      else if (
        queue.synced &&
        queue.buffer.length + list.length <= MAX_BUFFER &&
        this.held + bytes <= memoryMax
      ) {
        const held = new Set(queue.buffer.map((i) => i.row.id));
        this.push(
          queue,
          list.filter((r) => !held.has(r.id) && !queue.finished.has(r.id)).map((r) => itemOf(r)),
        );
      } else queue.synced = false; // the next scan reads them from the table
      this.ensureRunning(queue);
    }
  }

  /** Forgets a deleted instance's queues (their rows are purged by the caller). */
  forget(instanceId: string): void {
    for (const target of ['instance', 'global'] as const) {
      const queue = this.queues.get(key(instanceId, target));
      if (!queue) continue;
      this.queues.delete(key(instanceId, target));
      for (const item of [...queue.buffer]) this.drop(queue, item, 'dropped');
      queue.wake?.abort();
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.sweepTimer);
    for (const queue of this.queues.values()) queue.wake?.abort();
    await Promise.all([...this.queues.values()].map((q) => q.running));
    await this.marks.flush();
  }

  /** Finishes the "delivered" writes in flight (tests, shutdown). */
  flushMarks(): Promise<void> {
    return this.marks.flush();
  }

  private queue(instanceId: string, target: DeliveryTarget): Queue | undefined {
    if (this.stopping.signal.aborted || this.activeSince === undefined) return undefined;
    const k = key(instanceId, target);
    let queue = this.queues.get(k);
    if (!queue) {
      queue = {
        instanceId,
        target,
        buffer: [],
        bytes: 0,
        // Rows queued by another process later are found by the next sweep.
        synced: this.swept,
        scanning: undefined,
        notified: 0,
        unflushed: new Set(),
        finished: new Set(),
        running: undefined,
        parking: Promise.resolve(),
        wake: undefined,
        instanceName: undefined,
      };
      this.queues.set(k, queue);
    }
    return queue;
  }

  private push(queue: Queue, items: readonly Item[]): void {
    for (const item of items) {
      queue.buffer.push(item);
      queue.bytes += item.bytes;
      this.held += item.bytes;
    }
  }

  private setBuffer(queue: Queue, items: Item[]): void {
    this.held -= queue.bytes;
    queue.buffer = items;
    queue.bytes = items.reduce((sum, item) => sum + item.bytes, 0);
    this.held += queue.bytes;
  }

  /** Takes an item out of its queue; an item from the log is told how it left. */
  private drop(queue: Queue, item: Item, how: Settlement): void {
    const at = queue.buffer.indexOf(item);
    if (at >= 0) {
      queue.buffer.splice(at, 1);
      queue.bytes -= item.bytes;
      this.held -= item.bytes;
    }
    item.settle?.(how);
  }

  private ensureRunning(queue: Queue): void {
    if (queue.running) return;
    queue.running = this.run(queue).finally(() => {
      queue.running = undefined;
      // Work that arrived while the worker was leaving.
      if ((queue.buffer.length > 0 || !queue.synced) && this.alive(queue)) this.ensureRunning(queue);
    });
  }

  private alive(queue: Queue): boolean {
    return !this.stopping.signal.aborted && this.queues.get(key(queue.instanceId, queue.target)) === queue;
  }

  /** Writes a cap's line to the instance's log, at most once a minute per instance and cap. */
  private report(instanceId: string, cap: string, message: string, context: Record<string, unknown>): void {
    const k = `${cap}\u0000${instanceId}`;
    const last = this.reported.get(k);
    this.options.logger.warn({ instanceId, ...context }, message);
    if (last !== undefined && Date.now() - last < CAP_REPORT_INTERVAL_MS) return;
    this.reported.set(k, Date.now());
    if (this.reported.size > 10_000) this.reported.delete(this.reported.keys().next().value!);
    this.options.instanceLog?.(instanceId, message, context);
  }

  /** How many more rows this queue may hold (the pending cap). */
  private async room(queue: Queue | undefined, instanceId: string, target: DeliveryTarget): Promise<number> {
    const max = this.options.maxPendingPerQueue ?? DEFAULT_MAX_PENDING_PER_QUEUE;
    const pending =
      queue?.synced && !queue.scanning
        ? queue.buffer.filter((i) => i.row.id !== '').length
        : await this.options.log.countPending(instanceId, target);
    return Math.max(0, max - pending);
  }

  private refuseOverCap(instanceId: string, target: DeliveryTarget, dropped: readonly NewDelivery[]): void {
    if (dropped.length === 0) return;
    const max = this.options.maxPendingPerQueue ?? DEFAULT_MAX_PENDING_PER_QUEUE;
    const name = instanceNameOf(dropped[0]!.body) ?? instanceId;
    for (let i = 0; i < dropped.length; i++) {
      this.options.metrics.deadLetteredOne('webhook', { id: instanceId, name });
    }
    this.report(
      instanceId,
      `pending:${target}`,
      `webhook: ${max} deliveries already wait for the ${target === 'global' ? 'global ' : ''}webhook; new events are not queued for it until they drain (WEBHOOK_MAX_PENDING)`,
      { target, notQueued: dropped.length, firstEventId: dropped[0]!.eventId },
    );
  }

  /** Stores deliveries as rows (respecting the pending cap) and hands them to their queues. */
  private async store(deliveries: readonly NewDelivery[]): Promise<void> {
    const kept: NewDelivery[] = [];
    for (const [k, list] of byQueue(deliveries)) {
      const { instanceId, target } = list[0]!;
      const room = await this.room(this.queues.get(k), instanceId, target);
      kept.push(...list.slice(0, room));
      this.refuseOverCap(instanceId, target, list.slice(room));
    }
    this.handoff(await this.options.log.enqueue(kept));
  }

  /**
   * Parks the queue's deliveries that exist only in memory as rows, in queue order: the one in flight
   * keeps its place (its answer is then recorded on its row). Over the pending cap, the newest are dropped.
   */
  private park(queue: Queue): Promise<void> {
    const run = queue.parking.then(() => this.parkNow(queue));
    queue.parking = run.catch(() => undefined);
    return run;
  }

  private async parkNow(queue: Queue): Promise<void> {
    const items = queue.buffer.filter((i) => i.row.id === '' && i.settled === undefined);
    if (items.length === 0) return;
    let inserted: DeliveryRow[];
    let kept: Item[];
    try {
      const room = await this.room(queue, queue.instanceId, queue.target);
      kept = items.slice(0, room);
      const over = items.slice(room);
      for (const item of over) this.drop(queue, item, 'dropped');
      this.refuseOverCap(
        queue.instanceId,
        queue.target,
        over.map((i) => newDeliveryOf(i.row)),
      );
      inserted = await this.options.log.enqueue(kept.map((i) => newDeliveryOf(i.row)));
    } catch (error) {
      // The batch fails and goes again from the log: these events must not stay here as well.
      for (const item of items) this.drop(queue, item, 'abandoned');
      throw error;
    }
    const byEvent = new Map(inserted.map((r) => [r.eventId, r]));
    for (const item of kept) {
      const row = byEvent.get(item.row.eventId);
      if (row) {
        item.row = { ...row, attempts: item.row.attempts, nextAttemptAt: item.row.nextAttemptAt };
        if (item.success) {
          // Delivered while its row was being written: record that, or the row would be sent again.
          const id = row.id;
          queue.unflushed.add(id);
          this.marks.push({ ...item.success, id }, () => queue.unflushed.delete(id));
        }
        item.settle?.('parked');
      } else {
        // Its row exists from an earlier run (a crash after parking): that row is the delivery.
        this.drop(queue, item, 'dropped');
      }
    }
  }

  private async run(queue: Queue): Promise<void> {
    const pageSize = this.options.pageSize ?? 100;
    const memoryMax = this.options.memoryMaxBytes ?? DEFAULT_MEMORY_MAX_BYTES;
    while (this.alive(queue)) {
      if (queue.buffer.length === 0) {
        if (queue.synced) return;
        // Over the memory cap, a queue still makes progress one row at a time.
        await this.scan(queue, this.held >= memoryMax ? 1 : pageSize);
        continue;
      }
      const requests = this.requestsAtHead(queue);
      if (requests.length > 1 || requests[0]!.length > 1) {
        // Several requests (pipelined) or several events in one (batched); a failure leaves its head at
        // the head of the queue, charged with the attempt, and the loop then sends it alone.
        if ((await this.deliverPipelined(queue, requests)) === 'stopped') return;
        continue;
      }
      const item = queue.buffer[0]!;
      if (!(await this.deliver(queue, item))) return;
      this.finish(queue, item);
    }
  }

  private finish(queue: Queue, item: Item): void {
    this.drop(queue, item, 'delivered');
    if (item.row.id === '') return;
    queue.finished.add(item.row.id);
    if (queue.finished.size > FINISHED_MEMORY) queue.finished.delete(queue.finished.values().next().value!);
  }

  /**
   * The requests that can go out now from the head of the queue, in order: up to `pipeline` of them, each
   * with up to `batchMax` deliveries. Only deliveries never tried yet and due take part (a retry goes alone,
   * so its attempt count and backoff stay its own); the events of one request share its URL.
   */
  private requestsAtHead(queue: Queue): Item[][] {
    const batchMax = this.options.batchMax ?? 1;
    const pipeline = this.options.pipeline ?? DEFAULT_PIPELINE;
    const head = queue.buffer[0]!;
    if (head.row.attempts > 0 || queue.buffer.length < 2 || (batchMax <= 1 && pipeline <= 1)) return [[head]];
    const now = Date.now();
    const requests: Item[][] = [];
    let current: Item[] = [];
    for (const item of queue.buffer) {
      const { row } = item;
      if (row.attempts > 0 || row.nextAttemptAt.getTime() > now) break;
      if (current.length > 0 && (current.length >= batchMax || row.url !== current[0]!.row.url)) {
        requests.push(current);
        current = [];
        if (requests.length >= pipeline) break;
      }
      current.push(item);
    }
    if (current.length > 0 && requests.length < pipeline) requests.push(current);
    return requests.length > 0 ? requests : [[head]];
  }

  private outcome(item: Item, result: SendResult, attempts: number, at = new Date()): AttemptOutcome {
    return {
      id: item.row.id,
      attempts,
      at,
      statusCode: result.statusCode,
      error: result.ok ? null : result.error,
      durationMs: result.durationMs,
    };
  }

  /** A successful attempt: a row is marked delivered (coalesced), an event from the log is done. */
  private delivered(queue: Queue, item: Item, result: SendResult, attempts: number, at?: Date): void {
    item.success = this.outcome(item, result, attempts, at);
    if (item.row.id !== '') {
      const id = item.row.id;
      queue.unflushed.add(id);
      this.marks.push(this.outcome(item, result, attempts, at), () => queue.unflushed.delete(id));
    }
    item.settle?.('delivered');
    queue.instanceName ??= instanceNameOf(item.row.body);
    this.options.metrics.deliveredOne(
      'webhook',
      { id: queue.instanceId, name: queue.instanceName ?? queue.instanceId },
      item.row.storedAt,
    );
  }

  /**
   * Sends several requests of the queue (each one delivery, or a batch of them) with up to `pipeline` in
   * flight, started in order. Successes are delivered, whatever happened to the requests before them. The
   * first failed request counts as an attempt of its **head** (the other events of a batch, and the
   * requests behind it that failed too, are not charged: they go out again), which then waits for its
   * backoff at the head of the queue and is sent alone; a single delivery refused for good (a 4xx) is
   * dead-lettered at once. A receiver that refuses batches therefore still gets every event, one by one.
   */
  private async deliverPipelined(queue: Queue, requests: readonly Item[][]): Promise<'sent' | 'stopped'> {
    if (!this.alive(queue)) return 'stopped';
    const results = await this.attemptInOrder(requests);
    const at = new Date();
    let failed: { request: readonly Item[]; result: SendResult & { ok: false } } | undefined;
    let stopped = false;
    for (const [index, request] of requests.entries()) {
      const result = results[index]!;
      if (result.ok) {
        for (const item of request) this.delivered(queue, item, result, item.row.attempts + 1, at);
        for (const item of request) this.finish(queue, item);
      } else if (result.aborted)
        stopped = true; // shutdown: not an attempt; parked or read again
      else failed ??= { request, result };
    }
    if (stopped) return 'stopped';
    if (!failed) return 'sent';
    const head = failed.request[0]!;
    if (head.row.id === '') await this.park(queue).catch(() => undefined);
    if (head.settled === 'dropped' || head.settled === 'abandoned' || head.row.id === '') return 'sent';
    // A batch's head is retried alone before it can be dead-lettered.
    const alone = failed.request.length === 1;
    if ((await this.failedAttempt(queue, head, failed.result, head.row.attempts + 1, alone)) === 'dead')
      this.finish(queue, head);
    return 'sent';
  }

  /**
   * A failed attempt of a delivery that has a row: dead-lettered when refused for good or out of attempts
   * (unless `mayDie` is false), otherwise recorded with its next attempt time (backoff, or the answer's
   * Retry-After), which the item's row then carries.
   */
  private async failedAttempt(
    queue: Queue,
    item: Item,
    result: SendResult & { ok: false },
    attempts: number,
    mayDie = true,
  ): Promise<'retry' | 'dead'> {
    const { policy, metrics, logger } = this.options;
    queue.instanceName ??= instanceNameOf(item.row.body);
    const label = { id: queue.instanceId, name: queue.instanceName ?? queue.instanceId };
    const outcome = this.outcome(item, result, attempts);
    const retryable = isRetryable(result.statusCode);
    if (mayDie && (!retryable || attempts >= policy.maxAttempts)) {
      await this.deadLetter(queue, item.row, outcome, retryable ? 'attempts exhausted' : 'not retryable');
      metrics.deadLetteredOne('webhook', label);
      return 'dead';
    }
    let delay = retryable
      ? backoffDelay(
          { baseMs: policy.backoffBaseMs, maxMs: policy.backoffMaxMs },
          attempts,
          this.options.random,
        )
      : 0;
    if (result.retryAfterSeconds !== undefined) {
      delay = Math.min(policy.backoffMaxMs, Math.max(delay, result.retryAfterSeconds * 1000));
    }
    const nextAttemptAt = new Date(Date.now() + delay);
    metrics.retriedOne('webhook', label);
    logger.debug(
      { instanceId: queue.instanceId, deliveryId: item.row.id, attempts, delay, error: outcome.error },
      'webhook attempt failed; retrying',
    );
    await this.persist(() => this.options.log.recordFailure(outcome, nextAttemptAt));
    item.row = { ...item.row, attempts, nextAttemptAt };
    return 'retry';
  }

  /**
   * Sends the requests over the queue's connection, each queued behind the one before it (the secret
   * lookup and the concurrency cap come first, and must not reorder them), and waits for every answer.
   */
  private attemptInOrder(requests: readonly Item[][]): Promise<SendResult[]> {
    let previousQueued: Promise<void> = Promise.resolve();
    let previousAnswered: Promise<unknown> | undefined;
    const results = requests.map((request) => {
      let queued!: () => void;
      const thisQueued = new Promise<void>((resolve) => (queued = resolve));
      const after = previousQueued;
      const timeoutFrom = previousAnswered;
      previousQueued = thisQueued;
      const result = after
        .then(() =>
          this.attempt(
            request[0]!.row,
            request.length > 1 ? request.map((i) => i.row) : undefined,
            queued,
            timeoutFrom,
          ),
        )
        .finally(queued);
      previousAnswered = result;
      return result;
    });
    return Promise.all(results);
  }

  /**
   * Reads the queue's pending rows from the table. Rows handed over during the read are kept aside and
   * merged: a short page (everything pending was read) plus them is the whole queue, so the queue is synced
   * again and later rows arrive by handover alone. A full page leaves it unsynced for another scan.
   */
  private async scan(queue: Queue, pageSize: number): Promise<void> {
    const notified = queue.notified;
    queue.scanning = [];
    let rows: DeliveryRow[];
    try {
      rows = await this.options.log.nextPending(queue.instanceId, queue.target, pageSize, queue.unflushed);
    } catch (error) {
      queue.scanning = undefined;
      this.options.logger.error(
        { err: error, instanceId: queue.instanceId },
        'webhook: cannot read the waiting deliveries; retrying',
      );
      await sleep(1_000, this.stopping.signal);
      return;
    }
    const aside = queue.scanning;
    queue.scanning = undefined;
    // Finished here while the read ran (its "delivered" mark landed after the read): not again.
    const fresh = (row: DeliveryRow): boolean => !queue.unflushed.has(row.id) && !queue.finished.has(row.id);
    // The memory cap: keep what fits (at least one row, so the queue moves); the rest waits in the table.
    const memoryMax = this.options.memoryMaxBytes ?? DEFAULT_MEMORY_MAX_BYTES;
    let room = memoryMax - this.held;
    const fitting = rows
      .filter(fresh)
      .filter((r, i) => (room -= r.body.length + ITEM_OVERHEAD_BYTES) >= 0 || i === 0);
    if (fitting.length < rows.filter(fresh).length) {
      this.setBuffer(
        queue,
        fitting.map((r) => itemOf(r)),
      );
      queue.synced = false;
      return;
    }
    if (rows.length < pageSize) {
      const byId = new Map<string, DeliveryRow>();
      for (const row of [...rows, ...aside]) if (fresh(row)) byId.set(row.id, row);
      this.setBuffer(
        queue,
        [...byId.values()].sort((a, b) => compareIds(a.id, b.id)).map((r) => itemOf(r)),
      );
      queue.synced = queue.notified === notified;
    } else {
      this.setBuffer(
        queue,
        rows.filter(fresh).map((r) => itemOf(r)),
      );
      queue.synced = false;
    }
  }

  /**
   * Sends one delivery until it is delivered, dead or dropped; false when the dispatcher stopped first. An
   * event from the log that fails is parked (with every event behind it) before its retries.
   */
  private async deliver(queue: Queue, item: Item): Promise<boolean> {
    let attempts = item.row.attempts;
    let notBefore = item.row.nextAttemptAt.getTime();
    for (;;) {
      const wait = notBefore - Date.now();
      if (wait > 0) {
        queue.wake = new AbortController();
        await sleep(wait, AbortSignal.any([queue.wake.signal, this.stopping.signal]));
        queue.wake = undefined;
      }
      if (!this.alive(queue)) return false;
      if (item.settled !== undefined && item.settled !== 'parked') return true;
      const result = await this.attempt(item.row);
      if (!result.ok && result.aborted) return false; // shutdown: not an attempt; parked or read again
      attempts += 1;
      if (result.ok) {
        this.delivered(queue, item, result, attempts);
        return true;
      }
      if (item.row.id === '') {
        // The first failure of an event taken from the log: it needs a row for its retry state.
        await this.park(queue).catch(() => undefined);
        if (item.row.id === '') return true; // dropped or abandoned: not ours to send any more
      }
      if ((await this.failedAttempt(queue, item, result, attempts)) === 'dead') return true;
      notBefore = item.row.nextAttemptAt.getTime();
    }
  }

  /**
   * One request: the row's body, or with `batch` the batch's bodies as one JSON array. `onQueued` runs
   * once the request has its place on the queue's connection; its timeout runs from `timeoutFrom`.
   */
  private async attempt(
    row: DeliveryRow,
    batch?: readonly DeliveryRow[],
    onQueued?: () => void,
    timeoutFrom?: Promise<unknown>,
  ): Promise<SendResult> {
    let secret: string | null | undefined;
    try {
      secret = await this.options.secretOf(row.instanceId, row.target);
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
    const rows = batch ?? [row];
    const body = batch ? `[${batch.map((r) => r.body).join(',')}]` : row.body;
    const headers: Record<string, string> = {
      [EVENT_ID_HEADER]: rows.map((r) => r.eventId).join(','),
      // A delivery sent straight from the log has no row: its id is the event's.
      [DELIVERY_ID_HEADER]: rows.map((r) => r.id || r.eventId).join(','),
      'x-zapwire-event': [...new Set(rows.map((r) => r.eventName))].join(','),
    };
    if (batch) headers[BATCH_SIZE_HEADER] = String(batch.length);
    Object.assign(headers, signatureHeaders(body, secret));
    const release = await this.semaphore.acquire();
    try {
      return await this.options.sender.send({
        url: row.url,
        body,
        headers,
        timeoutMs: this.options.policy.timeoutMs,
        signal: this.stopping.signal,
        // One connection per queue: pipelined requests reach the receiver in the queue's order.
        orderKey: key(row.instanceId, row.target),
        ...(onQueued ? { onQueued } : {}),
        ...(timeoutFrom ? { timeoutFrom } : {}),
      });
    } finally {
      release();
    }
  }

  private async deadLetter(
    queue: Queue,
    row: DeliveryRow,
    outcome: AttemptOutcome,
    why: string,
  ): Promise<void> {
    const error = `${why}: ${outcome.error ?? 'failed'}`;
    this.options.logger.warn(
      {
        instanceId: queue.instanceId,
        deliveryId: row.id,
        eventId: row.eventId,
        attempts: outcome.attempts,
        error,
      },
      'webhook delivery dead-lettered',
    );
    await this.persist(() => this.options.log.markDead({ ...outcome, error }));
    const subscription = row.target === 'global' ? GLOBAL_WEBHOOK_DEAD_LETTERS : WEBHOOK_SUBSCRIPTION;
    await this.persist(() =>
      this.options.store.addDeadLetter(subscription, recordedEventOf(row), error, outcome.attempts),
    );
    const maxDead = this.options.maxDeadPerInstance ?? DEFAULT_MAX_DEAD_PER_INSTANCE;
    await this.persist(async () => {
      const removed = await this.options.log.capDead(queue.instanceId, maxDead);
      if (removed > 0) {
        this.report(
          queue.instanceId,
          'dead',
          `webhook: more than ${maxDead} dead deliveries; the oldest are removed from the delivery log (WEBHOOK_MAX_DEAD)`,
          { removed },
        );
      }
    });
  }

  /** Log writes retry until they succeed or the dispatcher stops: losing them would lose the retry state. */
  private async persist(write: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await write();
        return;
      } catch (error) {
        if (this.stopping.signal.aborted) return;
        this.options.logger.error({ err: error }, 'webhook: delivery log write failed; retrying');
        await sleep(Math.min(5_000, 100 * 2 ** attempt), this.stopping.signal);
      }
    }
  }
}

function instanceNameOf(body: string): string | undefined {
  try {
    // zapwire's envelope, or Evolution GO's shape (API_COMPAT=evolution-go).
    const parsed = JSON.parse(body) as { instance?: { name?: unknown }; instanceName?: unknown };
    const name = parsed.instance?.name ?? parsed.instanceName;
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined;
  }
}

/** The stored event as far as a dead letter needs it, rebuilt from the delivery row. */
export function recordedEventOf(row: DeliveryRow): RecordedEvent {
  let data: Record<string, unknown> = {};
  try {
    data = (JSON.parse(row.body) as { data?: Record<string, unknown> }).data ?? {};
  } catch {
    // keep empty data: the row's body is the authority
  }
  return {
    id: row.eventId,
    stream: row.stream,
    streamPosition: row.streamPosition,
    position: row.position as RecordedEvent['position'],
    type: row.eventType,
    data,
    metadata: {},
    createdAt: row.storedAt,
  };
}
