/**
 * Works the webhook outbox. One ordered queue per (instance, target): a queue sends its head, and only
 * when the head is delivered or dead-lettered does the next one go out, so an instance's events arrive in
 * log order. Queues are independent: a failing endpoint only stalls its own queue; a global cap bounds the
 * requests in flight across all of them.
 *
 * Retry rule: a failed attempt is retried after an exponential backoff with jitter, unless the answer was a
 * 4xx other than 408/429; after the last attempt the delivery is dead (delivery log + store dead letter) and
 * the queue moves on. During a long outage a queue therefore dead-letters about one event per retry cycle
 * and holds the rest, which flow in order as soon as the endpoint answers again.
 */
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

interface Queue {
  readonly instanceId: string;
  readonly target: DeliveryTarget;
  /** Rows to send, in order; the head is the one being sent. */
  buffer: DeliveryRow[];
  /** True while `buffer` holds every pending row of this queue that this process has not finished. */
  synced: boolean;
  /** While an outbox scan runs: the rows handed over meanwhile, merged with the scan's result after. */
  scanning: DeliveryRow[] | undefined;
  /** Bumped by notify(): a scan that overlapped one cannot conclude the queue is synced. */
  notified: number;
  /** Delivered here, "delivered" not written yet: a scan must not pick them up again. */
  readonly unflushed: Set<string>;
  /** Ids recently finished here (bounded), so a late handover of the same row is not sent twice. */
  readonly finished: Set<string>;
  running: Promise<void> | undefined;
  /** Wakes the queue's retry wait early (stop, forget). */
  wake: AbortController | undefined;
  instanceName: string | undefined;
}

/** Rows a queue holds in memory; beyond that they wait in the outbox table. */
const MAX_BUFFER = 1_000;
const FINISHED_MEMORY = 2_000;
/** Set on a batched request: the number of envelopes in the array. */
export const BATCH_SIZE_HEADER = 'x-zapwire-batch-size';

const key = (instanceId: string, target: DeliveryTarget): string => `${target}\u0000${instanceId}`;

export class WebhookDispatcher {
  private readonly queues = new Map<string, Queue>();
  private readonly semaphore: Semaphore;
  private readonly marks: DeliveredMarks;
  private readonly stopping = new AbortController();

  constructor(private readonly options: DispatcherOptions) {
    this.semaphore = new Semaphore(options.concurrency ?? 64);
    this.marks = new DeliveredMarks(options.log, options.logger);
  }

  /** Resumes every queue with pending rows (after a restart). */
  async start(): Promise<void> {
    for (const { instanceId, target } of await this.options.log.pendingQueues())
      this.notify(instanceId, target);
  }

  /** Rows of this queue may be pending in the outbox that this process does not hold: scan for them. */
  notify(instanceId: string, target: DeliveryTarget): void {
    const queue = this.queue(instanceId, target);
    if (!queue) return;
    queue.synced = false;
    queue.notified += 1;
    this.ensureRunning(queue);
  }

  /** Rows just committed to the outbox (in id order per queue): sent without reading them back. */
  handoff(rows: readonly DeliveryRow[]): void {
    const byQueue = new Map<string, DeliveryRow[]>();
    for (const row of rows) {
      const k = key(row.instanceId, row.target);
      const list = byQueue.get(k);
      if (list) list.push(row);
      else byQueue.set(k, [row]);
    }
    for (const list of byQueue.values()) {
      const queue = this.queue(list[0]!.instanceId, list[0]!.target);
      if (!queue) continue;
      if (queue.scanning) queue.scanning.push(...list);
      else if (queue.synced && queue.buffer.length + list.length <= MAX_BUFFER) {
        const held = new Set(queue.buffer.map((r) => r.id));
        queue.buffer.push(...list.filter((r) => !held.has(r.id) && !queue.finished.has(r.id)));
      } else queue.synced = false; // the next scan reads them from the outbox
      this.ensureRunning(queue);
    }
  }

  private queue(instanceId: string, target: DeliveryTarget): Queue | undefined {
    if (this.stopping.signal.aborted) return undefined;
    const k = key(instanceId, target);
    let queue = this.queues.get(k);
    if (!queue) {
      queue = {
        instanceId,
        target,
        buffer: [],
        synced: false,
        scanning: undefined,
        notified: 0,
        unflushed: new Set(),
        finished: new Set(),
        running: undefined,
        wake: undefined,
        instanceName: undefined,
      };
      this.queues.set(k, queue);
    }
    return queue;
  }

  private ensureRunning(queue: Queue): void {
    if (queue.running) return;
    queue.running = this.run(queue).finally(() => {
      queue.running = undefined;
      // Work that arrived while the worker was leaving.
      if ((queue.buffer.length > 0 || !queue.synced) && this.alive(queue)) this.ensureRunning(queue);
    });
  }

  /** Forgets a deleted instance's queues (their rows are purged by the caller). */
  forget(instanceId: string): void {
    for (const target of ['instance', 'global'] as const) {
      const queue = this.queues.get(key(instanceId, target));
      if (!queue) continue;
      this.queues.delete(key(instanceId, target));
      queue.wake?.abort();
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    for (const queue of this.queues.values()) queue.wake?.abort();
    await Promise.all([...this.queues.values()].map((q) => q.running));
    await this.marks.flush();
  }

  /** Finishes the "delivered" writes in flight (tests, shutdown). */
  flushMarks(): Promise<void> {
    return this.marks.flush();
  }

  private alive(queue: Queue): boolean {
    return !this.stopping.signal.aborted && this.queues.get(key(queue.instanceId, queue.target)) === queue;
  }

  private async run(queue: Queue): Promise<void> {
    const pageSize = this.options.pageSize ?? 100;
    while (this.alive(queue)) {
      if (queue.buffer.length === 0) {
        if (queue.synced) return;
        await this.scan(queue, pageSize);
        continue;
      }
      const batch = this.batchAtHead(queue);
      if (batch.length > 1) {
        const outcome = await this.deliverBatch(queue, batch);
        if (outcome === 'stopped') return;
        if (outcome === 'delivered') {
          queue.buffer.splice(0, batch.length);
          for (const row of batch) this.finish(queue, row);
          continue;
        }
        // Failed: the head carries the attempt and goes on alone, with its retries and backoff.
      }
      const row = queue.buffer[0]!;
      if (!(await this.deliver(queue, row))) return;
      queue.buffer.shift();
      this.finish(queue, row);
    }
  }

  private finish(queue: Queue, row: DeliveryRow): void {
    queue.finished.add(row.id);
    if (queue.finished.size > FINISHED_MEMORY) queue.finished.delete(queue.finished.values().next().value!);
  }

  /**
   * The rows at the head of the queue that can go out together: never tried yet (a retry goes alone, so
   * its attempt count and backoff stay its own), due, and addressed to the same URL.
   */
  private batchAtHead(queue: Queue): DeliveryRow[] {
    const max = this.options.batchMax ?? 1;
    const head = queue.buffer[0]!;
    if (max <= 1 || head.attempts > 0 || queue.buffer.length < 2) return [head];
    const now = Date.now();
    const batch: DeliveryRow[] = [];
    for (const row of queue.buffer) {
      if (
        batch.length >= max ||
        row.attempts > 0 ||
        row.url !== head.url ||
        row.nextAttemptAt.getTime() > now
      )
        break;
      batch.push(row);
    }
    return batch;
  }

  /**
   * One POST for several rows. Success marks them all delivered. A failure is recorded as an attempt of
   * the head (the others are not charged: they go out again in the next batch) and the head is then sent
   * alone after its backoff, so a receiver that refuses batches still gets every event, one by one.
   */
  private async deliverBatch(
    queue: Queue,
    batch: readonly DeliveryRow[],
  ): Promise<'delivered' | 'failed' | 'stopped'> {
    if (!this.alive(queue)) return 'stopped';
    const { policy, metrics } = this.options;
    const head = batch[0]!;
    queue.instanceName ??= instanceNameOf(head);
    const label = { id: queue.instanceId, name: queue.instanceName ?? queue.instanceId };
    const result = await this.attempt(head, batch);
    if (!result.ok && result.aborted) return 'stopped'; // shutdown: stays pending, no attempt counted
    const at = new Date();
    const outcomeOf = (row: DeliveryRow): AttemptOutcome => ({
      id: row.id,
      attempts: row.attempts + 1,
      at,
      statusCode: result.statusCode,
      error: result.ok ? null : result.error,
      durationMs: result.durationMs,
    });
    if (result.ok) {
      for (const row of batch) {
        queue.unflushed.add(row.id);
        this.marks.push(outcomeOf(row), () => queue.unflushed.delete(row.id));
        metrics.deliveredOne('webhook', label, row.storedAt);
      }
      return 'delivered';
    }
    metrics.retriedOne('webhook', label);
    const delay = isRetryable(result.statusCode)
      ? backoffDelay({ baseMs: policy.backoffBaseMs, maxMs: policy.backoffMaxMs }, 1, this.options.random)
      : 0;
    const nextAttemptAt = new Date(Date.now() + delay);
    await this.persist(() => this.options.log.recordFailure(outcomeOf(head), nextAttemptAt));
    if (queue.buffer[0] === head) queue.buffer[0] = { ...head, attempts: head.attempts + 1, nextAttemptAt };
    return 'failed';
  }

  /**
   * Reads the queue's pending rows from the outbox. Rows handed over during the read are kept aside and
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
        'webhook: cannot read the outbox; retrying',
      );
      await sleep(1_000, this.stopping.signal);
      return;
    }
    const aside = queue.scanning;
    queue.scanning = undefined;
    if (rows.length < pageSize) {
      const byId = new Map<string, DeliveryRow>();
      for (const row of [...rows, ...aside]) {
        if (!queue.unflushed.has(row.id) && !queue.finished.has(row.id)) byId.set(row.id, row);
      }
      queue.buffer = [...byId.values()].sort((a, b) => compareIds(a.id, b.id));
      queue.synced = queue.notified === notified;
    } else {
      queue.buffer = rows;
      queue.synced = false;
    }
  }

  /** Sends one row until it is delivered or dead; false when the dispatcher stopped first. */
  private async deliver(queue: Queue, initial: DeliveryRow): Promise<boolean> {
    const { policy, metrics, logger } = this.options;
    let attempts = initial.attempts;
    let notBefore = initial.nextAttemptAt.getTime();
    queue.instanceName ??= instanceNameOf(initial);
    const label = { id: queue.instanceId, name: queue.instanceName ?? queue.instanceId };
    for (;;) {
      const wait = notBefore - Date.now();
      if (wait > 0) {
        queue.wake = new AbortController();
        await sleep(wait, AbortSignal.any([queue.wake.signal, this.stopping.signal]));
        queue.wake = undefined;
      }
      if (!this.alive(queue)) return false;
      const result = await this.attempt(initial);
      if (!result.ok && result.aborted) return false; // shutdown: stays pending, no attempt counted
      attempts += 1;
      const outcome: AttemptOutcome = {
        id: initial.id,
        attempts,
        at: new Date(),
        statusCode: result.statusCode,
        error: result.ok ? null : result.error,
        durationMs: result.durationMs,
      };
      if (result.ok) {
        queue.unflushed.add(initial.id);
        this.marks.push(outcome, () => queue.unflushed.delete(initial.id));
        metrics.deliveredOne('webhook', label, initial.storedAt);
        return true;
      }
      const retryable = isRetryable(result.statusCode);
      if (retryable && attempts < policy.maxAttempts) {
        let delay = backoffDelay(
          { baseMs: policy.backoffBaseMs, maxMs: policy.backoffMaxMs },
          attempts,
          this.options.random,
        );
        if (result.retryAfterSeconds !== undefined) {
          delay = Math.min(policy.backoffMaxMs, Math.max(delay, result.retryAfterSeconds * 1000));
        }
        notBefore = Date.now() + delay;
        metrics.retriedOne('webhook', label);
        logger.debug(
          { instanceId: queue.instanceId, deliveryId: initial.id, attempts, delay, error: outcome.error },
          'webhook attempt failed; retrying',
        );
        await this.persist(() => this.options.log.recordFailure(outcome, new Date(notBefore)));
        continue;
      }
      await this.deadLetter(queue, initial, outcome, retryable ? 'attempts exhausted' : 'not retryable');
      metrics.deadLetteredOne('webhook', label);
      return true;
    }
  }

  /** One request: the row's body, or with `batch` the batch's bodies as one JSON array. */
  private async attempt(row: DeliveryRow, batch?: readonly DeliveryRow[]): Promise<SendResult> {
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
      [DELIVERY_ID_HEADER]: rows.map((r) => r.id).join(','),
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

function instanceNameOf(row: DeliveryRow): string | undefined {
  try {
    // zapwire's envelope, or Evolution GO's shape (API_COMPAT=evolution-go).
    const parsed = JSON.parse(row.body) as { instance?: { name?: unknown }; instanceName?: unknown };
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
