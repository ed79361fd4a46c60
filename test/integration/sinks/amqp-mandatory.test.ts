/**
 * RabbitMQ `mandatory` publishing, against the real RabbitMQ on 127.0.0.1:5672 (fails, never skips, when it
 * is down): a message no queue is bound for comes back from the broker and is dead-lettered, counted and
 * noted in the instance log, instead of being dropped without a trace; the other instances' messages flow on.
 * Also the Evolution GO body (API_COMPAT=evolution-go) on the broker.
 */
import { randomUUID } from 'node:crypto';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AmqpSink } from '../../../src/sinks/amqp.ts';
import { AMQP_SUBSCRIPTION } from '../../../src/sinks/broker-names.ts';
import { ConfigTimeline } from '../../../src/sinks/config-timeline.ts';
import { SinkMetrics } from '../../../src/sinks/metrics.ts';
import { payloadRenderer } from '../../../src/sinks/payload.ts';
import {
  assertEnvelope,
  createInstance,
  eventually,
  messages,
  silentLogger,
  sinks as settings,
  storeInstanceLog,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';

describe('RabbitMQ sink, mandatory publishing', () => {
  let store: MemoryEventStore;
  let consumer: ChannelModel;
  let channel: Channel;
  let exchange: string;
  let received: ConsumeMessage[];
  let sink: AmqpSink | undefined;
  let metrics: SinkMetrics;

  const startSink = (profile: 'default' | 'evolution-go' = 'default'): AmqpSink => {
    metrics = new SinkMetrics();
    sink = new AmqpSink({
      url: AMQP_URL,
      exchange,
      connectionName: `zapwire-test-${randomUUID()}`,
      store,
      timeline: new ConfigTimeline(store, undefined, silentLogger),
      metrics,
      logger: silentLogger,
      payload: payloadRenderer(profile),
      instanceLog: storeInstanceLog(store),
      reconnect: { baseMs: 100, maxMs: 500 },
      subscription: { pollIntervalMs: 50, retryDelayMs: 100 },
    });
    sink.start();
    return sink;
  };

  beforeEach(async () => {
    store = new MemoryEventStore();
    exchange = `zapwire.test.${randomUUID()}`;
    received = [];
    consumer = await amqp.connect(AMQP_URL);
    channel = await consumer.createChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    // Only the instance `bound` has a queue.
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, exchange, 'bound.*');
    await channel.consume(queue, (m) => m && received.push(m), { noAck: true });
  });

  afterEach(async () => {
    await sink?.stop();
    sink = undefined;
    await channel.deleteExchange(exchange).catch(() => undefined);
    await consumer.close().catch(() => undefined);
  });

  it('dead-letters, counts and logs an unroutable message once a minute per instance; the rest flows on', async () => {
    const running = startSink();
    await createInstance(store, 'b1', 'bound', settings({ rabbitmqEnable: true }));
    await createInstance(store, 'l1', 'lonely', settings({ rabbitmqEnable: true }));
    const lonely = await messages(store, 'l1', 2, 'lost');
    const kept = await messages(store, 'b1', 2, 'kept');
    await eventually(() => received.length === 2, 10_000, 'the routable messages');
    const subscription = running['subscription']!;
    await subscription.waitFor(kept.at(-1)!.position, 10_000);

    for (const m of received) assertEnvelope(JSON.parse(m.content.toString('utf8')));
    expect(received.map((m) => m.fields.routingKey)).toEqual(['bound.MESSAGE', 'bound.MESSAGE']);

    const dead = await store.listDeadLetters(AMQP_SUBSCRIPTION);
    expect(dead.map((d) => d.eventId).sort()).toEqual(lonely.map((e) => e.id).sort());
    for (const d of dead) {
      expect(d.error).toContain('unroutable');
      expect(d.error).toContain('lonely.MESSAGE');
    }

    const text = await metrics.registry.render();
    expect(text).toMatch(/zapwire_sink_unroutable_total\{[^}]*instance="lonely"[^}]*\} 2/);
    expect(text).toMatch(/zapwire_sink_dead_lettered_total\{[^}]*instance="lonely"[^}]*\} 2/);
    expect(text).toMatch(/zapwire_sink_delivered_total\{[^}]*instance="bound"[^}]*\} 2/);
    expect(text).not.toMatch(/zapwire_sink_delivered_total\{[^}]*instance="lonely"/);

    // One line in the instance log for the two messages (throttled), none for the bound instance.
    const logged = (await store.readStream('wa-l1')).filter((e) => e.type === 'RuntimeLogged');
    expect(logged).toHaveLength(1);
    expect(logged[0]!.data).toMatchObject({
      level: 'warn',
      context: { sink: 'rabbitmq', routingKey: 'lonely.MESSAGE' },
    });
    expect(String(logged[0]!.data['message'])).toContain('unroutable');
    expect((await store.readStream('wa-b1')).filter((e) => e.type === 'RuntimeLogged')).toHaveLength(0);

    // Binding a queue later makes the instance's next messages arrive.
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, exchange, 'lonely.*');
    const late: ConsumeMessage[] = [];
    await channel.consume(queue, (m) => m && late.push(m), { noAck: true });
    await messages(store, 'l1', 1, 'found');
    await eventually(() => late.length === 1, 10_000, 'a message once a queue is bound');
  });

  it("publishes Evolution GO's body under API_COMPAT=evolution-go", async () => {
    startSink('evolution-go');
    await createInstance(store, 'b1', 'bound', settings({ rabbitmqEnable: true }));
    const [event] = await messages(store, 'b1', 1, 'evo');
    await eventually(() => received.length === 1, 10_000, 'one message');
    const body = JSON.parse(received[0]!.content.toString('utf8')) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['data', 'event', 'instanceId', 'instanceName']);
    expect(body).toMatchObject({
      event: 'Message',
      instanceId: 'b1',
      instanceName: 'bound',
      data: { Info: { ID: 'evo0', IsFromMe: false }, Message: { conversation: 'evo0' } },
    });
    expect(received[0]!.properties.messageId).toBe(event!.id);
  });
});
