/**
 * What an attempt's answer means for a webhook queue, and when to try again. The rule separates a
 * receiver that is down from an event it refuses:
 *
 * - **down**: no answer (connection refused, reset, TLS failure, timeout), a 5xx, a 408 or a 429, or a
 *   redirect (a redirect is not followed: the signed body goes only where it was configured). The event is
 *   not at fault: the queue pauses and probes the receiver with its head event, with a capped backoff, and
 *   nothing is dead-lettered for it until an event is older than the maximum age.
 * - **refused**: any other 4xx. The receiver answered and does not want this event: it is dead-lettered at
 *   once and the queue moves on.
 */
import { backoffDelay } from '../backoff.ts';
import type { SendResult } from './sender.ts';

export interface OutagePolicy {
  /** Per request (WEBHOOK_TIMEOUT_MS). */
  readonly timeoutMs: number;
  /** First probe delay after a failure (WEBHOOK_BACKOFF_BASE_MS); doubles per failed probe. */
  readonly probeBaseMs: number;
  /** Longest delay between probes of a down receiver (WEBHOOK_PROBE_MAX_MS). */
  readonly probeMaxMs: number;
  /** An undelivered event older than this is dead-lettered instead of sent (WEBHOOK_MAX_AGE). */
  readonly maxAgeMs: number;
}

export const DEFAULT_OUTAGE_POLICY: OutagePolicy = {
  timeoutMs: 10_000,
  probeBaseMs: 1_000,
  probeMaxMs: 30_000,
  maxAgeMs: 72 * 3_600_000,
};

/** A Retry-After longer than this is not believed (a receiver must not park a queue for days). */
const RETRY_AFTER_MAX_MS = 10 * 60_000;

export type Verdict =
  | { readonly kind: 'delivered' }
  | { readonly kind: 'refused'; readonly reason: string }
  | { readonly kind: 'down'; readonly reason: string; readonly retryAfterMs?: number };

/** 4xx answers other than 408 (timeout) and 429 (rate limited) are a refusal of the event. */
export function isRefusal(statusCode: number | null): boolean {
  return (
    statusCode !== null && statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 429
  );
}

export function verdictOf(result: SendResult): Verdict {
  if (result.ok) return { kind: 'delivered' };
  if (isRefusal(result.statusCode)) return { kind: 'refused', reason: result.error };
  return {
    kind: 'down',
    reason: result.error,
    ...(result.retryAfterSeconds !== undefined
      ? { retryAfterMs: Math.min(RETRY_AFTER_MAX_MS, result.retryAfterSeconds * 1000) }
      : {}),
  };
}

/** When to probe a down receiver again, after `failures` failed attempts in a row (1 = the first). */
export function probeDelay(
  policy: OutagePolicy,
  failures: number,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const backoff = backoffDelay({ baseMs: policy.probeBaseMs, maxMs: policy.probeMaxMs }, failures, random);
  return retryAfterMs === undefined ? backoff : Math.max(backoff, retryAfterMs);
}

/** True when an event stored at `storedAt` may no longer be sent (WEBHOOK_MAX_AGE). */
export function isExpired(policy: OutagePolicy, storedAt: Date, now = Date.now()): boolean {
  return now - storedAt.getTime() > policy.maxAgeMs;
}
