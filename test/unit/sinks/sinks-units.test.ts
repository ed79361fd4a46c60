import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../../src/sinks/backoff.ts';
import { ConfigTimeline } from '../../../src/sinks/config-timeline.ts';
import { CachedSinkDirectory, type InstanceSinkConfig } from '../../../src/sinks/directory.ts';
import { buildEnvelope } from '../../../src/sinks/envelope.ts';
import { amqpRoutingKey, natsSubject, routeOf, wants } from '../../../src/sinks/routing.ts';
import { isExpired, isRefusal, probeDelay, verdictOf } from '../../../src/sinks/webhook/attempt-policy.ts';
import { deliveryErrorForTenant } from '../../../src/sinks/webhook/tenant-view.ts';
import { encodeCheckpoint, justBefore } from '../../../src/store/checkpoint.ts';
import { START } from '../../../src/store/port.ts';
import { signPayload, signatureHeaders, verifySignature } from '../../../src/sinks/webhook/signature.ts';
import type { RecordedEvent } from '../../../src/store/port.ts';
import { MemoryEventStore } from '../../integration/sinks/support/memory-store.ts';
import {
  assertEnvelope,
  configureSinks,
  createInstance,
  sinks as settings,
} from '../../integration/sinks/support/fixtures.ts';

const recorded = (type: string, stream: string, data: Record<string, unknown> = {}): RecordedEvent => ({
  id: 'e1',
  stream,
  streamPosition: 1,
  position: '000000000007' as RecordedEvent['position'],
  type,
  data,
  metadata: {},
  createdAt: new Date('2026-01-02T03:04:05.000Z'),
});

describe('backoff', () => {
  it('grows exponentially, never exceeds the cap, and jitters downwards only', () => {
    const policy = { baseMs: 1_000, maxMs: 300_000 };
    expect(backoffDelay(policy, 1, () => 0)).toBe(1_000);
    expect(backoffDelay(policy, 4, () => 0)).toBe(8_000);
    expect(backoffDelay(policy, 30, () => 0)).toBe(300_000);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (n, r) => {
          const d = backoffDelay(policy, n, () => r);
          const raw = Math.min(300_000, 1_000 * 2 ** (n - 1));
          return d <= raw && d >= Math.floor(raw * 0.8);
        },
      ),
    );
  });
});

describe('webhook rules', () => {
  it('a 4xx other than 408 and 429 refuses the event; no answer, 5xx, 408, 429 and 3xx mean the receiver is down', () => {
    expect([400, 401, 403, 404, 409, 410, 422].map(isRefusal)).toEqual(Array(7).fill(true));
    expect([null, 408, 429, 500, 502, 503, 301].map(isRefusal)).toEqual(Array(7).fill(false));
    expect(verdictOf({ ok: true, statusCode: 204, durationMs: 1 })).toEqual({ kind: 'delivered' });
    expect(verdictOf({ ok: false, statusCode: 404, error: 'HTTP 404', durationMs: 1 })).toEqual({
      kind: 'refused',
      reason: 'HTTP 404',
    });
    expect(
      verdictOf({ ok: false, statusCode: 503, error: 'HTTP 503', durationMs: 1, retryAfterSeconds: 7 }),
    ).toEqual({ kind: 'down', reason: 'HTTP 503', retryAfterMs: 7_000 });
    // A Retry-After of a day is not believed: ten minutes at most.
    expect(
      verdictOf({ ok: false, statusCode: 429, error: 'HTTP 429', durationMs: 1, retryAfterSeconds: 86_400 }),
    ).toMatchObject({ kind: 'down', retryAfterMs: 600_000 });
  });

  it('probes a down receiver with a capped backoff, honouring Retry-After; an event past the maximum age is expired', () => {
    const policy = { timeoutMs: 1_000, probeBaseMs: 1_000, probeMaxMs: 30_000, maxAgeMs: 3_600_000 };
    expect(probeDelay(policy, 1, undefined, () => 0)).toBe(1_000);
    expect(probeDelay(policy, 3, undefined, () => 0)).toBe(4_000);
    expect(probeDelay(policy, 50, undefined, () => 0)).toBe(30_000);
    expect(probeDelay(policy, 1, 45_000, () => 0)).toBe(45_000);
    const now = Date.UTC(2026, 0, 1);
    expect(isExpired(policy, new Date(now - 3_600_000), now)).toBe(false);
    expect(isExpired(policy, new Date(now - 3_600_001), now)).toBe(true);
  });

  it("tells a tenant the kind of failure, never a receiver's body or a DNS answer", () => {
    expect(deliveryErrorForTenant('HTTP 500: <html>internal admin panel</html>')).toBe('HTTP 500');
    expect(deliveryErrorForTenant('refused by the receiver: HTTP 404: not here')).toBe(
      'refused by the receiver: HTTP 404',
    );
    expect(
      deliveryErrorForTenant('vm resolves to 127.0.0.1, a private, loopback or link-local address: set …'),
    ).toMatch(/^the URL points at a private/);
    expect(deliveryErrorForTenant('vm resolves to 127.0.0.1')).not.toContain('127.0.0.1');
    expect(deliveryErrorForTenant('connect ECONNREFUSED 10.0.0.7:8080')).toBe('connection refused');
    expect(deliveryErrorForTenant('getaddrinfo ENOTFOUND internal.corp')).toBe(
      'the host name does not resolve',
    );
    expect(
      deliveryErrorForTenant("Hostname/IP does not match certificate's altnames: Host: a. is not in …"),
    ).toBe('TLS handshake failed (certificate not accepted)');
    expect(deliveryErrorForTenant('timeout after 10000 ms')).toBe('timeout after 10000 ms');
    expect(deliveryErrorForTenant(null)).toBeNull();
  });

  it('signs the timestamp with the raw body (HMAC-SHA256) and verifies in constant time', () => {
    const body = '{"id":"x"}';
    const t = '1700000000';
    const now = 1_700_000_000_000;
    // printf '%s' '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac s3cret
    expect(signPayload(t, body, 's3cret')).toBe(
      'v1=2382c1d0968a5e57238c68de957f44d87e83d3049a5588ec251442ca372b8aec',
    );
    const headers = signatureHeaders(body, 's3cret', now + 999);
    expect(headers).toEqual({
      'x-zapwire-timestamp': t,
      'x-zapwire-signature': signPayload(t, body, 's3cret'),
    });
    expect(signatureHeaders(body, null, now)).toEqual({ 'x-zapwire-timestamp': t });
    const sig = headers['x-zapwire-signature'];
    expect(verifySignature(body, 's3cret', sig, t, { nowMs: now })).toBe(true);
    expect(verifySignature(`${body} `, 's3cret', sig, t, { nowMs: now })).toBe(false);
    expect(verifySignature(body, 'other', sig, t, { nowMs: now })).toBe(false);
    expect(verifySignature(body, 's3cret', undefined, t, { nowMs: now })).toBe(false);
    expect(verifySignature(body, 's3cret', sig, undefined, { nowMs: now })).toBe(false);
    // A timestamp moved forward to pass a freshness check no longer matches the signature.
    expect(verifySignature(body, 's3cret', sig, '1700000600', { nowMs: now + 600_000 })).toBe(false);
    // The genuine request replayed after the tolerance (300 s by default) is refused.
    expect(verifySignature(body, 's3cret', sig, t, { nowMs: now + 301_000 })).toBe(false);
    expect(verifySignature(body, 's3cret', sig, t, { nowMs: now + 301_000, toleranceSeconds: 600 })).toBe(
      true,
    );
    expect(verifySignature(body, 's3cret', sig, '17e8', { nowMs: now })).toBe(false);
  });

  it('justBefore: reading after it starts with the checkpoint itself', () => {
    expect(justBefore(encodeCheckpoint(7, 12))).toBe(encodeCheckpoint(7, 11));
    expect(justBefore(encodeCheckpoint(7, 0))).toBe(encodeCheckpoint(6, 10n ** 20n - 1n));
    expect(justBefore(encodeCheckpoint(0, 0))).toBe(START);
    expect(justBefore(START)).toBe(START);
    expect(justBefore('000000000007' as typeof START)).toBe(START);
  });
});

describe('routing and envelope', () => {
  it('maps domain events to sink names and instances, and builds valid envelopes', () => {
    expect(routeOf(recorded('MessageReceived', 'wa-i1'))).toEqual({ instanceId: 'i1', name: 'MESSAGE' });
    expect(routeOf(recorded('QrCodeIssued', 'instance-i1', { count: 2 }))).toEqual({
      instanceId: 'i1',
      name: 'QRCODE_UPDATED',
    });
    expect(routeOf(recorded('RuntimeLogged', 'wa-i1'))).toBeUndefined();
    expect(routeOf(recorded('MessageReceived', 'audit-instances'))).toBeUndefined();
    const closed = buildEnvelope(
      recorded('ConnectionClosed', 'instance-i1', { willReconnect: false, reason: 'logged_out' }),
      { id: 'i1', name: 'one' },
      'CONNECTION_UPDATE',
    );
    assertEnvelope(closed);
    expect(closed).toMatchObject({
      position: '000000000007',
      timestamp: '2026-01-02T03:04:05.000Z',
      data: { state: 'disconnected' },
    });
  });

  it('names routing keys and subjects, and honours enable flags and subscriptions', () => {
    expect(amqpRoutingKey('sales', 'MESSAGE')).toBe('sales.MESSAGE');
    expect(natsSubject('zapwire', 'a.b*c', 'CALL')).toBe('zapwire.a%2Eb%2Ac.CALL');
    const s = settings({ events: ['ALL'], rabbitmqEnable: true });
    expect(wants(s, 'rabbitmq', 'LABEL')).toBe(true);
    expect(wants(s, 'nats', 'LABEL')).toBe(false);
    expect(wants(s, 'webhook', 'LABEL')).toBe(false);
    expect(wants(settings({ webhookUrl: 'http://x', events: ['CALL'] }), 'webhook', 'MESSAGE')).toBe(false);
  });
});

describe('configuration timeline', () => {
  it('applies configuration in log order and undoes a failed batch', async () => {
    const store = new MemoryEventStore();
    await createInstance(store, 'i1', 'one', settings({ events: ['MESSAGE'] }));
    await configureSinks(store, 'i1', settings({ events: ['CALL'] }));
    const [, second] = store.events;
    await configureSinks(store, 'i1', settings({ events: ['LABEL'] }));
    const timeline = new ConfigTimeline(store, undefined, undefined);
    await timeline.catchUpBefore(second!.position);
    expect((await timeline.get('i1'))?.sinks.events).toEqual(['MESSAGE']);
    timeline.begin();
    timeline.apply(second!);
    expect((await timeline.get('i1'))?.sinks.events).toEqual(['CALL']);
    timeline.rollback();
    expect((await timeline.get('i1'))?.sinks.events).toEqual(['MESSAGE']);
    await timeline.catchUpThrough(await store.headPosition());
    expect((await timeline.get('i1'))?.sinks.events).toEqual(['LABEL']);
    await store.append('instance-i1', [{ type: 'InstanceDeleted', data: { at: 'x', by: 'admin' } }]);
    await timeline.catchUpThrough(await store.headPosition());
    expect(await timeline.get('i1')).toBeUndefined();
  });
});

describe('directory cache', () => {
  it('reuses answers for the TTL, forgets on invalidate, and does not cache failures', async () => {
    let calls = 0;
    let fail = false;
    let clock = 0;
    const config: InstanceSinkConfig = { id: 'i1', name: 'one', sinks: settings({}), webhookSecret: 's' };
    const cache = new CachedSinkDirectory(
      {
        get: async () => {
          calls += 1;
          if (fail) throw new Error('db down');
          return config;
        },
      },
      1_000,
      () => clock,
    );
    await cache.get('i1');
    await cache.get('i1');
    expect(calls).toBe(1);
    clock = 1_001;
    await cache.get('i1');
    expect(calls).toBe(2);
    cache.invalidate('i1');
    fail = true;
    await expect(cache.get('i1')).rejects.toThrow('db down');
    fail = false;
    await new Promise((r) => setTimeout(r, 0));
    await expect(cache.get('i1')).resolves.toBe(config);
    expect(calls).toBe(4);
  });
});
