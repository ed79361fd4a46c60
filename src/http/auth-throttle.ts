/**
 * Wrong API keys, counted per client address (an IPv6 /64 is one address; behind a proxy, the address
 * TRUST_PROXY lets Fastify read): a token bucket of `burst` tries that refills at `perMinute`. An address
 * whose bucket is empty gets 429 with Retry-After for every request that carries a key, a right one too:
 * answering a right key would let guessing go on at full speed. A request without a key is not a guess
 * and is answered as always. docs/security.md, "Guessing keys".
 */
import { Errors, type ZapwireError } from '../domain/errors.ts';

export interface FailedAuthLimits {
  /** AUTH_FAILURES_BURST: wrong keys an address may send before it waits. */
  readonly burst: number;
  /** AUTH_FAILURES_PER_MINUTE: tries an address regains per minute. */
  readonly perMinute: number;
}

export const DEFAULT_FAILED_AUTH_LIMITS: FailedAuthLimits = { burst: 20, perMinute: 10 };

interface Bucket {
  tries: number;
  at: number;
}

/** Addresses remembered at once; beyond it the least recently seen go first (they would be full soon). */
const MAX_ADDRESSES = 100_000;

export class FailedAuthThrottle {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    private readonly limits: FailedAuthLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = limits.perMinute / 60_000;
  }

  /** The refusal for an address that must wait before its next key, or undefined when it may try. */
  refusal(client: string): ZapwireError | undefined {
    const bucket = this.current(client);
    if (bucket === undefined || bucket.tries >= 1) return undefined;
    const seconds = Math.max(1, Math.ceil((1 - bucket.tries) / this.perMs / 1000));
    return Errors.tooMany(
      `too many wrong API keys from this address: try again in ${seconds} s (AUTH_FAILURES_PER_MINUTE)`,
      seconds,
    );
  }

  /** Counts a wrong key from an address. */
  failed(client: string): void {
    const bucket = this.current(client) ?? { tries: this.limits.burst, at: this.now() };
    bucket.tries -= 1;
    // Re-inserted: the Map's order is the order addresses were last seen.
    this.buckets.delete(client);
    this.buckets.set(client, bucket);
    if (this.buckets.size > MAX_ADDRESSES) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
  }

  /** The address's bucket refilled to now; undefined (and forgotten) once it is full again. */
  private current(client: string): Bucket | undefined {
    const bucket = this.buckets.get(client);
    if (!bucket) return undefined;
    const now = this.now();
    bucket.tries = Math.min(this.limits.burst, bucket.tries + (now - bucket.at) * this.perMs);
    bucket.at = now;
    if (bucket.tries >= this.limits.burst) {
      this.buckets.delete(client);
      return undefined;
    }
    return bucket;
  }
}
