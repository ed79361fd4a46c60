/**
 * The sinks' port onto the instances' current configuration. The runtime implements it on the read model
 * (rm_instances + the encrypted webhook secret); the sinks only read through it.
 */
import type { SinkSettings } from '../domain/events.ts';

export interface InstanceSinkConfig {
  readonly id: string;
  readonly name: string;
  readonly sinks: SinkSettings;
  /** Signs webhook bodies (X-Zapwire-Signature). Never logged, never sent. */
  readonly webhookSecret: string;
}

export interface SinkDirectory {
  /** undefined when the instance does not exist (or was deleted). */
  get(instanceId: string): Promise<InstanceSinkConfig | undefined>;
}

/**
 * A short-lived cache in front of the directory: a webhook burst asks for the same secret thousands of
 * times a second. Entries live `ttlMs`; `invalidate` drops one at once (secret rotated, instance deleted).
 */
export class CachedSinkDirectory implements SinkDirectory {
  private readonly entries = new Map<
    string,
    { value: Promise<InstanceSinkConfig | undefined>; expiresAt: number }
  >();

  constructor(
    private readonly inner: SinkDirectory,
    private readonly ttlMs = 5_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(instanceId: string): Promise<InstanceSinkConfig | undefined> {
    const at = this.now();
    const hit = this.entries.get(instanceId);
    if (hit && hit.expiresAt > at) return hit.value;
    const value = this.inner.get(instanceId);
    this.entries.set(instanceId, { value, expiresAt: at + this.ttlMs });
    // A failed lookup is not cached: the next call asks again.
    value.catch(() => {
      if (this.entries.get(instanceId)?.value === value) this.entries.delete(instanceId);
    });
    if (this.entries.size > 10_000) this.prune(at);
    return value;
  }

  invalidate(instanceId?: string): void {
    if (instanceId === undefined) this.entries.clear();
    else this.entries.delete(instanceId);
  }

  private prune(at: number): void {
    for (const [id, entry] of this.entries) if (entry.expiresAt <= at) this.entries.delete(id);
  }
}
