/**
 * The brokers' outage rule (RabbitMQ, NATS), in one place: an outage is not a failure of the event. A batch
 * the broker did not take (down, a lost connection, a nack, a full stream) pauses the sink, which keeps its
 * position and probes with the first message not taken, with a capped backoff, forever, then sends the rest.
 * Only the first message goes out while paused, so a message a failed try sent besides is sent once more,
 * not at every retry. What a broker refuses for good is the sink's business (a dead letter) and counts as
 * taken here.
 */
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';

export const DEFAULT_OUTAGE_RETRY: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/** One try: how many messages from the first on are settled, and why the next one is not (none: all are). */
export type SendTry<T> = (messages: readonly T[]) => Promise<{ settled: number; failure?: unknown }>;

export interface PausingSendOptions<T> {
  readonly retry?: BackoffPolicy;
  /** Ends the retries (the sink stops): the batch is then not acknowledged, and sent again later. */
  readonly signal: AbortSignal;
  /** One try only: throw its failure instead of pausing (a dead letter sent again by the admin). */
  readonly once?: boolean;
  /** The sink paused (first failure of the batch). */
  readonly paused?: (failure: unknown, waiting: number) => void;
  /** The probe got through after `attempts` tries. */
  readonly resumed?: (attempts: number) => void;
  /** Before each wait: the message the next probe sends. */
  readonly probing?: (head: T) => void;
}

/** Sends every message, pausing through outages (see the module comment); throws only when stopped. */
export async function sendPausing<T>(
  messages: readonly T[],
  send: SendTry<T>,
  options: PausingSendOptions<T>,
): Promise<void> {
  let pending = messages;
  let probing = false;
  for (let attempt = 1; pending.length > 0; attempt += 1) {
    const { settled, failure } = await send(probing ? pending.slice(0, 1) : pending);
    pending = pending.slice(settled);
    if (failure === undefined) {
      if (probing) options.resumed?.(attempt);
      probing = false;
      attempt = 0;
      continue;
    }
    if (options.once) throw failure;
    if (!probing) options.paused?.(failure, pending.length);
    probing = true;
    options.probing?.(pending[0]!);
    await sleep(backoffDelay(options.retry ?? DEFAULT_OUTAGE_RETRY, attempt), options.signal);
    if (options.signal.aborted) throw new Error('the sink stopped; the batch is sent again later');
  }
}
