/**
 * The small caches Baileys keeps per socket (message retry counters, call offers, users' device lists,
 * placeholder resends), held once per connector instead. Left to itself, each socket builds four
 * @cacheable/node-cache instances, each with sixteen Maps and an interval timer of its own: about 10 KB and
 * four timers per idle instance before any entry. Here every instance gets a view onto one store per kind,
 * its entries in a Map of its own (created at its first entry), expired by one sweep a minute for all of
 * them, and dropped when its connection ends, as the socket's own caches were. Same lifetimes as Baileys'
 * defaults (DEFAULT_CACHE_TTLS).
 */
import type { UserFacingSocketConfig } from '@whiskeysockets/baileys';

type CacheStore = NonNullable<UserFacingSocketConfig['msgRetryCounterCache']>;

interface Entry {
  readonly value: unknown;
  readonly expiresAt: number;
}

/** One kind of cache for every instance: instance id → key → entry. */
class TtlStore {
  private readonly byInstance = new Map<string, Map<string, Entry>>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  view(instanceId: string): CacheStore {
    const entries = (create: boolean): Map<string, Entry> | undefined => {
      let map = this.byInstance.get(instanceId);
      if (!map && create) this.byInstance.set(instanceId, (map = new Map()));
      return map;
    };
    return {
      get: <T>(key: string): T | undefined => {
        const map = entries(false);
        const entry = map?.get(key);
        if (!entry) return undefined;
        if (entry.expiresAt <= this.now()) {
          map!.delete(key);
          return undefined;
        }
        return entry.value as T;
      },
      set: <T>(key: string, value: T): boolean => {
        entries(true)!.set(key, { value, expiresAt: this.now() + this.ttlMs });
        return true;
      },
      del: (key: string): number => (entries(false)?.delete(key) ? 1 : 0),
      flushAll: (): void => {
        this.byInstance.delete(instanceId);
      },
    };
  }

  drop(instanceId: string): void {
    this.byInstance.delete(instanceId);
  }

  sweep(): void {
    const now = this.now();
    for (const [instanceId, map] of this.byInstance) {
      for (const [key, entry] of map) if (entry.expiresAt <= now) map.delete(key);
      if (map.size === 0) this.byInstance.delete(instanceId);
    }
  }

  /** Entries held for every instance (tests, the bench). */
  size(): number {
    let total = 0;
    for (const map of this.byInstance.values()) total += map.size;
    return total;
  }
}

export type SocketCacheConfig = Required<
  Pick<
    UserFacingSocketConfig,
    'msgRetryCounterCache' | 'callOfferCache' | 'userDevicesCache' | 'placeholderResendCache'
  >
>;

export class SocketCaches {
  private readonly stores: Record<keyof SocketCacheConfig, TtlStore>;
  private readonly sweeper: NodeJS.Timeout;

  constructor(now: () => number = Date.now, sweepEveryMs = 60_000) {
    this.stores = {
      msgRetryCounterCache: new TtlStore(60 * 60_000, now),
      callOfferCache: new TtlStore(5 * 60_000, now),
      userDevicesCache: new TtlStore(5 * 60_000, now),
      placeholderResendCache: new TtlStore(60 * 60_000, now),
    };
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  /** What one socket of this instance gets in its config. */
  forInstance(instanceId: string): SocketCacheConfig {
    return {
      msgRetryCounterCache: this.stores.msgRetryCounterCache.view(instanceId),
      callOfferCache: this.stores.callOfferCache.view(instanceId),
      userDevicesCache: this.stores.userDevicesCache.view(instanceId),
      placeholderResendCache: this.stores.placeholderResendCache.view(instanceId),
    };
  }

  /** The instance's connection ended: its entries go (a new socket starts empty, as Baileys' own would). */
  drop(instanceId: string): void {
    for (const store of Object.values(this.stores)) store.drop(instanceId);
  }

  sweep(): void {
    for (const store of Object.values(this.stores)) store.sweep();
  }

  /** Entries held, for every instance and kind together. */
  size(): number {
    return Object.values(this.stores).reduce((sum, store) => sum + store.size(), 0);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
