/**
 * The default reconnect delay: exponential from 2 s, capped at 5 min, with jitter so that instances that
 * lost the connection together do not come back together.
 *
 * The jitter is a hash of (instance id, attempt), not Math.random: the same context always gives the same
 * delay, so the `retryInMs` that decide() records is the delay the live actor then waits.
 */
import type { InstanceContext } from './types.ts';

export const RECONNECT_BASE_MS = 2_000;
export const RECONNECT_CAP_MS = 300_000;

/** FNV-1a, 32 bits, as a fraction in [0, 1). */
function unitHash(seed: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) {
    hash ^= seed.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) / 0x1_0000_0000;
}

export interface BackoffBounds {
  readonly baseMs: number;
  readonly capMs: number;
}

/** Delay before retry number `retry` (1 = first retry): nominal base · 2^(retry-1), ±25 %, within [base, cap]. */
export function exponentialBackoffMs(
  retry: number,
  seed: string,
  { baseMs, capMs }: BackoffBounds = { baseMs: RECONNECT_BASE_MS, capMs: RECONNECT_CAP_MS },
): number {
  const exponent = Math.min(Math.max(retry, 1) - 1, 20);
  const nominal = Math.min(baseMs * 2 ** exponent, capMs);
  const jittered = Math.round(nominal * (0.75 + 0.5 * unitHash(seed)));
  return Math.min(Math.max(jittered, baseMs), capMs);
}

/** A `reconnectDelay` with configured bounds (RECONNECT_BASE_MS / RECONNECT_MAX_MS); as pure as the default. */
export function reconnectDelayWithin(bounds: BackoffBounds) {
  return ({ context }: { readonly context: InstanceContext }): number =>
    exponentialBackoffMs(
      context.reconnectAttempt,
      `${context.instanceId}:${context.reconnectAttempt}`,
      bounds,
    );
}

/**
 * The `reconnectDelay` the machine uses unless the runtime provides another. Any replacement must also be a
 * pure function of the context, for the reason above. In `backoff`, `reconnectAttempt` is the retry about
 * to be made (1 for the first), so the first retry waits about 2 s.
 */
export function defaultReconnectDelay({ context }: { readonly context: InstanceContext }): number {
  return exponentialBackoffMs(context.reconnectAttempt, `${context.instanceId}:${context.reconnectAttempt}`);
}
