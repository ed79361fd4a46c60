/**
 * A processor's failure policy applied to one batch (port.ts FailurePolicy): the batch is handed to the
 * processor; when it fails, either the whole batch is retried later (a transient failure, or a processor
 * that never gives up), or its events are handled again one at a time, so the one that fails every time is
 * given up on (a dead letter) and every other event still lands. Used by the runtime for every batch, and by
 * a projection's rebuild, which reads on its own.
 */
import type { BatchRange, Checkpoint, FailurePolicy, Processor, RecordedEvent } from '../port.ts';
import { LeaseLostError } from '../errors.ts';

const DEFAULT_RETRY_DELAY_MS = 1_000;

/** The batch was not (entirely) handled: retry it from the processor's checkpoint after a pause. */
export class RetryLater extends Error {
  override readonly name = 'RetryLater';
  constructor(readonly reason: unknown) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
}

export interface PolicyHooks {
  /** The processor's checkpoint is now `at` (told after the batch, and after each event while isolating). */
  moved(at: Checkpoint): void;
  /** Waits between the tries of one event (a stop ends it early). */
  sleep(ms: number): Promise<void>;
  stopping(): boolean;
}

/** The wait before retry number `attempt` (1 = the first). */
export function retryDelayOf(policy: FailurePolicy | undefined, attempt: number): number {
  const delay = policy?.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  return typeof delay === 'function' ? delay(attempt) : delay;
}

/** Tells the policy of a failure; a failing callback must not stop the processor. */
export function reportFailure(policy: FailurePolicy | undefined, error: unknown): void {
  try {
    policy?.onError?.(error);
  } catch {
    // see above
  }
}

function givesUp(policy: FailurePolicy | undefined, error: unknown): boolean {
  return (
    policy?.maxAttempts !== undefined && policy.giveUp !== undefined && policy.transient?.(error) !== true
  );
}

/**
 * Hands the batch to the processor under its failure policy. Resolves with the checkpoint the processor
 * holds afterwards; throws RetryLater when the batch must be tried again later (from the checkpoint last
 * told to `moved`), or LeaseLostError.
 */
export async function handleUnderPolicy(
  processor: Processor,
  events: readonly RecordedEvent[],
  range: BatchRange,
  hooks: PolicyHooks,
): Promise<Checkpoint> {
  const policy = processor.failure;
  try {
    const at = await processor.handle(events, range);
    hooks.moved(at);
    return at;
  } catch (error) {
    if (error instanceof LeaseLostError) throw error;
    reportFailure(policy, error);
    if (!givesUp(policy, error) || events.length === 0) throw new RetryLater(error);
  }
  return isolate(processor, events, range, hooks);
}

/** Handles the events one at a time: each gets maxAttempts tries, then is given up on. */
async function isolate(
  processor: Processor,
  events: readonly RecordedEvent[],
  range: BatchRange,
  hooks: PolicyHooks,
): Promise<Checkpoint> {
  const policy = processor.failure!;
  const maxAttempts = policy.maxAttempts!;
  let at = range.from;
  for (const event of events) {
    for (let attempt = 1; ; attempt += 1) {
      let reached: Checkpoint;
      const single = { from: at, to: event.position };
      try {
        reached = await processor.handle([event], single);
      } catch (error) {
        if (error instanceof LeaseLostError) throw error;
        reportFailure(policy, error);
        if (!givesUp(policy, error)) throw new RetryLater(error);
        if (attempt < maxAttempts) {
          await hooks.sleep(retryDelayOf(policy, attempt));
          if (hooks.stopping()) throw new RetryLater(error);
          continue;
        }
        reached = await policy.giveUp!(event, error, attempt, single);
      }
      hooks.moved(reached);
      // Another process moved the checkpoint elsewhere: continue from there, not from here.
      if (reached !== event.position) return reached;
      at = reached;
      break;
    }
  }
  if (at === range.to) return at;
  try {
    at = await processor.handle([], { from: at, to: range.to });
  } catch (error) {
    if (error instanceof LeaseLostError) throw error;
    reportFailure(policy, error);
    throw new RetryLater(error);
  }
  hooks.moved(at);
  return at;
}
