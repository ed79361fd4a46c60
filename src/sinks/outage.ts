/**
 * The brokers' outage rule (RabbitMQ, NATS), in one place: an outage is not a failure of the event. A batch
 * the broker did not take (down, a lost connection, a nack, a full stream) pauses the sink, which keeps its
 * position and probes with the first message not taken, with a capped backoff, forever, then sends the rest.
 * Only the first message goes out while paused, so a message a failed try sent besides is sent once more,
 * not at every retry. What a broker refuses for good is the sink's business (a dead letter) and counts as
 * taken here.
 */
import type { Logger } from 'pino';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';
import type { InstanceSinkState } from './config-timeline.ts';
import type { SinkMetrics } from './metrics.ts';

export const DEFAULT_OUTAGE_RETRY: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/** One try: how many messages from the first on are settled, and why the next one is not (none: all are). */
export type SendTry<T> = (messages: readonly T[]) => Promise<{ settled: number; failure?: unknown }>;

export interface PausingSendOptions {
  /** Which sink, for its log lines and the retries it counts. */
  readonly sink: { readonly kind: 'rabbitmq' | 'nats'; readonly name: string };
  readonly logger: Logger;
  readonly metrics: SinkMetrics;
  readonly retry?: BackoffPolicy;
  /** Ends the retries (the sink stops): the batch is then not acknowledged, and sent again later. */
  readonly signal: AbortSignal;
  /** One try only: throw its failure instead of pausing (a dead letter sent again by the admin). */
  readonly once?: boolean;
}

/**
 * Sends every message, pausing through outages (see the module comment): says in the process log when the
 * sink pauses and resumes, and counts each probe as a retry of its instance. Throws only when stopped.
 */
export async function sendPausing<T extends { readonly item: { readonly instance: InstanceSinkState } }>(
  messages: readonly T[],
  send: SendTry<T>,
  options: PausingSendOptions,
): Promise<void> {
  const { sink, logger, metrics } = options;
  let pending = messages;
  let probing = false;
  for (let attempt = 1; pending.length > 0; attempt += 1) {
    const { settled, failure } = await send(probing ? pending.slice(0, 1) : pending);
    pending = pending.slice(settled);
    if (failure === undefined) {
      if (probing) logger.info({ attempts: attempt }, `${sink.name} takes messages again; the sink resumed`);
      probing = false;
      attempt = 0;
      continue;
    }
    if (options.once) throw failure;
    if (!probing) {
      logger.warn(
        { err: failure, waiting: pending.length },
        `${sink.name} did not take a message; the sink is paused and keeps its position, retrying (nothing is dropped)`,
      );
    }
    probing = true;
    metrics.retriedOne(sink.kind, pending[0]!.item.instance);
    await sleep(backoffDelay(options.retry ?? DEFAULT_OUTAGE_RETRY, attempt), options.signal);
    if (options.signal.aborted) throw new Error('the sink stopped; the batch is sent again later');
  }
}
