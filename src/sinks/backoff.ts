/**
 * Exponential backoff with jitter, shared by webhook retries and broker reconnects.
 * delay(n) = min(max, base · 2^(n-1)) scaled by a random factor in [1 - jitter, 1], so the cap is never
 * exceeded and retries of many queues spread out instead of arriving together.
 */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
  /** Fraction of the delay that is randomised (0 = none, 1 = "full jitter"). Default 0.2. */
  readonly jitter?: number;
}

/** Delay before retry number `attempt` (1 = the first retry). */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempt - 1);
  const raw = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(exponent, 52));
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0.2));
  return Math.round(raw * (1 - jitter * random()));
}

/** Resolves after `ms`, or at once when the signal aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
