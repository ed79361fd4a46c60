/**
 * Per-instance rate limits of what tenants ask for (docs/security.md, "Limits per instance"): a window
 * limiter (reconnect at most once a minute) and token buckets per kind of command.
 */
import { Errors } from '../domain/errors.ts';

/** At most one action per key per window (the specification: reconnect at most once a minute). */
export class WindowRateLimiter {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records the action and returns 0, or returns the whole seconds to wait without recording. */
  tryTake(key: string): number {
    if (this.windowMs <= 0) return 0;
    const now = this.now();
    const previous = this.last.get(key);
    if (previous !== undefined && now - previous < this.windowMs) {
      return Math.max(1, Math.ceil((this.windowMs - (now - previous)) / 1000));
    }
    this.last.set(key, now);
    return 0;
  }

  forget(key: string): void {
    this.last.delete(key);
  }
}

/** The kinds of command an instance is limited on, each with its own bucket. */
export type LimitedCommand = 'settings' | 'lifecycle' | 'pairing' | 'send';

/** What each kind covers and how it is configured, for the 429's message. */
const LIMITS: Readonly<Record<LimitedCommand, { readonly what: string; readonly variable: string }>> = {
  settings: {
    what: 'settings changes (advanced settings, events, proxy, token and webhook secret rotation)',
    variable: 'RATE_LIMIT_SETTINGS_PER_MINUTE',
  },
  lifecycle: { what: 'connects, disconnects and logouts', variable: 'RATE_LIMIT_LIFECYCLE_PER_MINUTE' },
  pairing: { what: 'pairing codes', variable: 'RATE_LIMIT_PAIRING_PER_MINUTE' },
  send: { what: 'texts sent', variable: 'RATE_LIMIT_SEND_PER_MINUTE' },
};

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per instance and kind: `perMinute` actions at once, refilled at `perMinute` a minute.
 * Full buckets are dropped, so memory follows the instances that were busy in the last minute.
 */
export class InstanceRateLimits {
  private readonly buckets = new Map<LimitedCommand, Map<string, Bucket>>();

  constructor(
    private readonly perMinute: Readonly<Record<LimitedCommand, number>>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one action from the instance's bucket, or throws a 429 (ZW_ERR_RATE_LIMITED with Retry-After). */
  take(command: LimitedCommand, instanceId: string): void {
    const limit = this.perMinute[command];
    if (limit <= 0) return;
    let buckets = this.buckets.get(command);
    if (!buckets) this.buckets.set(command, (buckets = new Map()));
    const now = this.now();
    const perMs = limit / 60_000;
    const bucket = buckets.get(instanceId) ?? { tokens: limit, at: now };
    bucket.tokens = Math.min(limit, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    if (bucket.tokens < 1) {
      buckets.set(instanceId, bucket);
      const waitSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
      const { what, variable } = LIMITS[command];
      throw Errors.tooMany(
        `too many ${what} for this instance: at most ${limit} a minute (${variable}); try again in ${waitSeconds} s`,
        waitSeconds,
      );
    }
    bucket.tokens -= 1;
    buckets.set(instanceId, bucket);
    if (buckets.size > 10_000) this.dropFull(buckets, now, perMs, limit);
  }

  forget(instanceId: string): void {
    for (const buckets of this.buckets.values()) buckets.delete(instanceId);
  }

  private dropFull(buckets: Map<string, Bucket>, now: number, perMs: number, limit: number): void {
    for (const [id, bucket] of buckets)
      if (bucket.tokens + (now - bucket.at) * perMs >= limit) buckets.delete(id);
  }
}
