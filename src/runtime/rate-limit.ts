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
