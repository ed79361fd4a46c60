/**
 * One queue per key: work for the same key runs one at a time, in arrival order; different keys run in
 * parallel. A failed job does not block the ones behind it.
 */
export class Mailboxes {
  private readonly tails = new Map<string, Promise<unknown>>();
  /** When the job running now for a key started (the health monitor's "stuck mailbox"). */
  private readonly running = new Map<string, number>();

  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const timed = async (): Promise<T> => {
      const started = Date.now();
      this.running.set(key, started);
      try {
        return await job();
      } finally {
        if (this.running.get(key) === started) this.running.delete(key);
      }
    };
    const result = previous.then(timed, timed);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** When the job running now for `key` started; undefined when none runs. */
  busySince(key: string): number | undefined {
    return this.running.get(key);
  }

  /**
   * Abandons what is queued behind a job that never finishes: later jobs for `key` no longer wait for it.
   * The abandoned job may still finish later; its result goes to its own caller.
   */
  abandon(key: string): void {
    this.tails.delete(key);
    this.running.delete(key);
  }

  /** Resolves when every queued job has finished. */
  async drain(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}
