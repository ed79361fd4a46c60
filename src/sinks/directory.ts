/**
 * The sinks' port onto the instances' current configuration, and its adapter on the read model (an
 * instance's row in rm_instances) joined with the instance's sealed webhook secret. The sinks only read
 * through it.
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

/** An instance's sink settings, as the read model has them (projections/read-model.ts). */
export interface SinkSettingsSource {
  sinkSettingsOf(
    instanceId: string,
  ): Promise<{ readonly id: string; readonly name: string; readonly sinks: SinkSettings } | undefined>;
}

/** The sealed secrets of instances (src/runtime/secrets.ts). */
export interface WebhookSecretSource {
  get(instanceId: string, kind: 'webhook_secret'): Promise<string | undefined>;
}

/** The directory on the read model and the secrets: an instance is in it while both have it. */
export class InstanceSinkDirectory implements SinkDirectory {
  constructor(
    private readonly settings: SinkSettingsSource,
    private readonly secrets: WebhookSecretSource,
  ) {}

  async get(instanceId: string): Promise<InstanceSinkConfig | undefined> {
    const instance = await this.settings.sinkSettingsOf(instanceId);
    if (!instance) return undefined;
    const webhookSecret = await this.secrets.get(instance.id, 'webhook_secret');
    if (webhookSecret === undefined) return undefined;
    return { id: instance.id, name: instance.name, webhookSecret, sinks: instance.sinks };
  }
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
