/**
 * Baileys' per-socket caches held once per connector (src/whatsapp/baileys/socket-caches.ts): each
 * instance sees only its own entries, entries expire after Baileys' own lifetimes, a sweep frees expired
 * entries and empty instances, and an instance's entries go when its connection ends.
 */
import { describe, expect, it } from 'vitest';
import { SocketCaches } from '../../../src/whatsapp/baileys/socket-caches.ts';

describe('shared socket caches', () => {
  it('keeps each instance to its own entries', async () => {
    const caches = new SocketCaches();
    try {
      const a = caches.forInstance('a');
      const b = caches.forInstance('b');
      a.msgRetryCounterCache.set('m1', 2);
      expect(await a.msgRetryCounterCache.get('m1')).toBe(2);
      expect(await b.msgRetryCounterCache.get('m1')).toBeUndefined();
      // Another socket of the same instance (a reconnect) sees the same entries.
      expect(await caches.forInstance('a').msgRetryCounterCache.get('m1')).toBe(2);
      b.userDevicesCache.set('5511', [{ device: 0 }]);
      expect(a.userDevicesCache.del('5511')).toBe(0);
      expect(b.userDevicesCache.del('5511')).toBe(1);
      a.callOfferCache.set('c1', { id: 'c1' });
      a.placeholderResendCache.set('p1', true);
      // flushAll empties that kind for that instance only.
      await a.placeholderResendCache.flushAll();
      expect(await a.placeholderResendCache.get('p1')).toBeUndefined();
      expect(await a.callOfferCache.get('c1')).toEqual({ id: 'c1' });
    } finally {
      caches.close();
    }
  });

  it("expires entries after Baileys' lifetimes, and a sweep frees them", async () => {
    let now = 0;
    const caches = new SocketCaches(() => now);
    try {
      const a = caches.forInstance('a');
      a.callOfferCache.set('c1', { id: 'c1' });
      a.msgRetryCounterCache.set('m1', 1);
      now = 5 * 60_000 - 1;
      expect(await a.callOfferCache.get('c1')).toEqual({ id: 'c1' });
      now = 5 * 60_000;
      expect(await a.callOfferCache.get('c1')).toBeUndefined();
      expect(await a.msgRetryCounterCache.get('m1')).toBe(1);
      expect(caches.size()).toBe(1);
      now = 60 * 60_000;
      caches.sweep();
      expect(caches.size()).toBe(0);
    } finally {
      caches.close();
    }
  });

  it("drops an instance's entries when its connection ends", async () => {
    const caches = new SocketCaches();
    try {
      caches.forInstance('a').msgRetryCounterCache.set('m1', 1);
      caches.forInstance('b').msgRetryCounterCache.set('m1', 1);
      caches.drop('a');
      expect(await caches.forInstance('a').msgRetryCounterCache.get('m1')).toBeUndefined();
      expect(await caches.forInstance('b').msgRetryCounterCache.get('m1')).toBe(1);
    } finally {
      caches.close();
    }
  });
});
