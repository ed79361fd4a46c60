/**
 * The brokers' outage rule (RabbitMQ, NATS), in one place: an outage is not a failure of the event. A batch
 * the broker did not take (down, a lost connection, a nack, a full stream) pauses the sink, which keeps its
 * position and probes with the first message not taken, with a capped backoff, forever, then sends the rest.
 * Only the first message goes out while paused, so a message a failed try sent besides is sent once more,
 * not at every retry. What a broker refuses for good is the sink's business (a dead letter) and counts as
 * taken here. And a dead letter of a broker sink sent again by the admin (sendAgain).
 */
import type { Logger } from 'pino';
import { Errors } from '../domain/errors.ts';
import type { DeadLetterRetryResult, EventStore, RecordedEvent } from '../store/port.ts';
import { backoffDelay, sleep, type BackoffPolicy } from './backoff.ts';
import type { InstanceSinkState } from './config-timeline.ts';
import type { SinkMetrics } from './metrics.ts';
import { routeAsOf, type RoutedEvent } from './subscription.ts';

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
  /** Told when the sink pauses (why, in words) and when it takes messages again (null). */
  readonly onPause?: (why: string | null) => void;
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
      if (probing) {
        logger.info({ attempts: attempt }, `${sink.name} takes messages again; the sink resumed`);
        options.onPause?.(null);
      }
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
      options.onPause?.(failure instanceof Error ? failure.message : String(failure));
    }
    probing = true;
    metrics.retriedOne(sink.kind, pending[0]!.item.instance);
    await sleep(backoffDelay(options.retry ?? DEFAULT_OUTAGE_RETRY, attempt), options.signal);
    if (options.signal.aborted) throw new Error('the sink stopped; the batch is sent again later');
  }
}

/** How a broker sink sends one dead-lettered event again (sendAgain). */
export interface SendAgain<T> {
  readonly sink: { readonly name: string; readonly subscription: string };
  readonly store: Pick<EventStore, 'readAll' | 'compareCheckpoints' | 'removeDeadLetter'>;
  /** The event's message, whatever the instance's settings say now (the admin asks for it). */
  readonly message: (routed: RoutedEvent) => Promise<T | undefined>;
  /** One try; resolves with the ids the broker refused for good (dead-lettered again). */
  readonly publish: (message: T) => Promise<Set<string>>;
  /** Where it goes, in words: "(subject …)". */
  readonly where: (message: T) => string;
}

/**
 * POST /admin/dead-letters/:id/retry for a broker sink: the event, judged by its instance's configuration as
 * of the event, is published once more. Taken: the dead letter goes; refused again: it stays (with the new
 * error); the broker away: 503, the dead letter stays.
 */
export async function sendAgain<T>(event: RecordedEvent, how: SendAgain<T>): Promise<DeadLetterRetryResult> {
  const { sink } = how;
  const routed = await routeAsOf(how.store, event);
  if (!routed) {
    return {
      outcome: 'failed',
      message: `event ${event.id} is not one the ${sink.name} sink sends (no instance configuration for it in the log)`,
    };
  }
  const message = await how.message(routed);
  if (message === undefined) {
    return {
      outcome: 'failed',
      message: `the payload profile has no ${sink.name} message for ${routed.name}`,
    };
  }
  let refused: Set<string>;
  try {
    refused = await how.publish(message);
  } catch (error) {
    throw Errors.unavailable(`${sink.name} did not take the message: ${String((error as Error).message)}`, 5);
  }
  if (refused.has(event.id)) {
    return {
      outcome: 'failed',
      message: `${sink.name} refused it again ${how.where(message)}; the dead letter stays`,
    };
  }
  await how.store.removeDeadLetter(sink.subscription, event.id);
  return { outcome: 'retried', message: `published ${how.where(message)}` };
}
