/**
 * The Evolution GO body (API_COMPAT=evolution-go) on the real NATS at 127.0.0.1:4222 (fails, never skips,
 * when it is down): core NATS, the event id in `Nats-Msg-Id`, nothing for events without a counterpart.
 */
import { randomUUID } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigTimeline } from '../../../src/sinks/config-timeline.ts';
import { SinkMetrics } from '../../../src/sinks/metrics.ts';
import { NatsSink } from '../../../src/sinks/nats.ts';
import { payloadRenderer } from '../../../src/sinks/payload.ts';
import {
  createInstance,
  eventually,
  mixedEvents,
  silentLogger,
  sinks as settings,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';

const NATS_URL = `nats://127.0.0.1:${Number(process.env['NATS_PORT'] ?? 4222)}`;

let sink: NatsSink | undefined;
let observer: NatsConnection | undefined;
afterEach(async () => {
  await sink?.stop();
  await observer?.close();
});

describe('NATS sink, API_COMPAT=evolution-go', () => {
  it("publishes Evolution GO's body with the event id beside it", async () => {
    const store = new MemoryEventStore();
    const prefix = `zt${randomUUID().slice(0, 8)}`;
    observer = await connect({ servers: NATS_URL });
    const got: Array<{ subject: string; msgId: string | undefined; body: Record<string, unknown> }> = [];
    observer.subscribe(`${prefix}.>`, {
      callback: (_, m) =>
        got.push({
          subject: m.subject,
          msgId: m.headers?.get('Nats-Msg-Id'),
          body: JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>,
        }),
    });
    await observer.flush();
    const metrics = new SinkMetrics();
    sink = new NatsSink({
      url: NATS_URL,
      prefix,
      store,
      timeline: new ConfigTimeline(store, undefined, silentLogger),
      metrics,
      logger: silentLogger,
      payload: payloadRenderer('evolution-go'),
      subscription: { pollIntervalMs: 50, retryDelayMs: 100 },
    });
    sink.start();
    await createInstance(store, 'n1', 'natty', settings({ natsEnable: true, events: ['ALL'] }));
    const events = await mixedEvents(store, 'n1');
    await eventually(() => got.length >= 4, 10_000, 'four messages');
    await new Promise((r) => setTimeout(r, 200));
    // ConnectionStarting has no Evolution GO counterpart: not published.
    expect(got.map((g) => g.subject.slice(prefix.length + 1))).toEqual([
      'natty.MESSAGE',
      'natty.CALL',
      'natty.PRESENCE_UPDATE',
      'natty.QR_CODE',
    ]);
    expect(got.map((g) => g.body['event'])).toEqual(['Message', 'CallOffer', 'Presence', 'QRCode']);
    for (const g of got) {
      expect(g.body).toMatchObject({ instanceId: 'n1', instanceName: 'natty' });
      expect(events.some((e) => e.id === g.msgId)).toBe(true);
    }
    expect(await metrics.registry.render()).toMatch(
      /zapwire_sink_delivered_total\{[^}]*instance="natty"[^}]*\} 4/,
    );
  });
});
