/**
 * Against the real RabbitMQ on 127.0.0.1:5672 (fails, never skips, when it is down).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AmqpSink } from '../../../src/sinks/amqp.ts';
import { ConfigTimeline } from '../../../src/sinks/config-timeline.ts';
import { SinkMetrics } from '../../../src/sinks/metrics.ts';
import {
  assertEnvelope,
  capturingLogger,
  createInstance,
  eventually,
  messages,
  mixedEvents,
  sinks as settings,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const run = promisify(execFile);

/** Closes one connection from the broker's side, found by its client-provided name. */
async function closeFromServer(connectionName: string): Promise<void> {
  const { stdout } = await run('rabbitmqctl', ['list_connections', '--silent', 'pid', 'client_properties']);
  const line = stdout.split('\n').find((l) => l.includes(`"${connectionName}"`));
  if (!line) throw new Error(`no RabbitMQ connection named ${connectionName}`);
  await run('rabbitmqctl', ['close_connection', line.split('\t')[0]!, 'zapwire test: forced close']);
}

describe('RabbitMQ sink', () => {
  let store: MemoryEventStore;
  let consumer: ChannelModel;
  let channel: Channel;
  let exchange: string;
  let received: ConsumeMessage[];
  let sink: AmqpSink | undefined;

  const startSink = (
    connectionName = `zapwire-test-${randomUUID()}`,
    { url = AMQP_URL, to = exchange }: { url?: string; to?: string } = {},
  ): { sink: AmqpSink; logs: () => string[] } => {
    const { logger, messages: logs } = capturingLogger();
    sink = new AmqpSink({
      url,
      exchange: to,
      connectionName,
      store,
      timeline: new ConfigTimeline(store, undefined, logger),
      metrics: new SinkMetrics(),
      logger,
      reconnect: { baseMs: 100, maxMs: 500 },
      retry: { baseMs: 50, maxMs: 200 },
      subscription: { pollIntervalMs: 50, retryDelayMs: 100 },
    });
    sink.start();
    return { sink, logs };
  };

  beforeEach(async () => {
    store = new MemoryEventStore();
    exchange = `zapwire.test.${randomUUID()}`;
    received = [];
    consumer = await amqp.connect(AMQP_URL);
    channel = await consumer.createChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, exchange, '#');
    await channel.consume(queue, (m) => m && received.push(m), { noAck: true });
  });

  afterEach(async () => {
    await sink?.stop();
    sink = undefined;
    await channel.deleteExchange(exchange).catch(() => undefined);
    await consumer.close().catch(() => undefined);
  });

  it('publishes exactly the subscribed events: routing key <instance>.<EVENT>, persistent, messageId = event id', async () => {
    startSink();
    await createInstance(
      store,
      'r1',
      'rabbit',
      settings({ rabbitmqEnable: true, events: ['MESSAGE', 'CALL'] }),
    );
    await createInstance(store, 'r2', 'nope', settings({ rabbitmqEnable: false, events: ['ALL'] }));
    await createInstance(store, 'r3', 'every', settings({ rabbitmqEnable: true, events: ['ALL'] }));
    const appended = [
      ...(await mixedEvents(store, 'r1')),
      ...(await mixedEvents(store, 'r2')),
      ...(await mixedEvents(store, 'r3')),
    ];
    await eventually(() => received.length >= 7, 10_000, '7 messages');
    await new Promise((r) => setTimeout(r, 200));
    expect(received.map((m) => m.fields.routingKey)).toEqual([
      'rabbit.MESSAGE',
      'rabbit.CALL',
      'every.MESSAGE',
      'every.CALL',
      'every.PRESENCE_UPDATE',
      'every.CONNECTION_UPDATE',
      'every.QR_CODE',
    ]);
    for (const m of received) {
      const body = JSON.parse(m.content.toString('utf8')) as { id: string; event: string };
      assertEnvelope(body);
      expect(m.properties.messageId).toBe(body.id);
      expect(m.properties.deliveryMode).toBe(2);
      expect(m.properties.contentType).toBe('application/json');
      expect(m.fields.exchange).toBe(exchange);
      expect(appended.some((e) => e.id === body.id)).toBe(true);
    }
  });

  it('resumes after the broker closes the connection mid-stream, losing nothing', async () => {
    const connectionName = `zapwire-test-${randomUUID()}`;
    const { logs } = startSink(connectionName);
    await createInstance(store, 'r1', 'rabbit', settings({ rabbitmqEnable: true, events: ['ALL'] }));
    const ids: string[] = [];
    const produce = async (rounds: number): Promise<void> => {
      for (let i = 0; i < rounds; i++) {
        ids.push(...(await messages(store, 'r1', 50, `p${ids.length}-`)).map((e) => e.id));
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await produce(6);
    await eventually(() => received.length >= 100, 10_000, 'first messages');
    // Keep appending while the broker closes the connection (rabbitmqctl takes about a second), then more.
    let closed = false;
    const closing = closeFromServer(connectionName).finally(() => (closed = true));
    while (!closed) await produce(1);
    await closing;
    await produce(10);
    await eventually(
      () => new Set(received.map((m) => m.properties.messageId as string)).size >= ids.length,
      20_000,
      'all ids',
    );
    const got = received.map((m) => m.properties.messageId as string);
    expect(new Set(got)).toEqual(new Set(ids));
    // Repeats are allowed (at-least-once) but only as the same id with the same body.
    const bodies = new Map<string, string>();
    for (const m of received) {
      const id = m.properties.messageId as string;
      const body = m.content.toString('utf8');
      expect(bodies.get(id) ?? body).toBe(body);
      bodies.set(id, body);
    }
    expect(logs().filter((l) => l === 'RabbitMQ sink connected').length).toBeGreaterThanOrEqual(2);
    expect(logs()).toContain('RabbitMQ connection closed; will reconnect');
  });

  it('a queue that refuses (full, reject-publish) pauses the sink: nothing dead-lettered, the position kept, all delivered in order once it has room', async () => {
    // An exchange of its own, with one queue that holds one message and nacks the rest.
    const refusing = `zapwire.test.${randomUUID()}`;
    await channel.assertExchange(refusing, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', {
      exclusive: true,
      autoDelete: true,
      arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' },
    });
    await channel.bindQueue(queue, refusing, '#');
    const { logs } = startSink(undefined, { to: refusing });
    await createInstance(store, 'r1', 'rabbit', settings({ rabbitmqEnable: true, events: ['MESSAGE'] }));
    const appended = await messages(store, 'r1', 5, 'q');
    await eventually(() => logs().some((l) => l.includes('the sink is paused')), 10_000, 'paused');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await store.listDeadLetters('sink-rabbitmq')).toEqual([]);
    expect(store.compareCheckpoints(await store.readCheckpoint('sink-rabbitmq'), appended[1]!.position)).toBe(
      -1,
    );
    // A consumer makes room: the probe gets through, then the rest, in log order, each once.
    const got: string[] = [];
    await channel.consume(queue, (m) => m && got.push(m.properties.messageId as string), { noAck: true });
    await eventually(() => got.length >= 5, 15_000, 'all five');
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual(appended.map((e) => e.id));
    expect(await store.listDeadLetters('sink-rabbitmq')).toEqual([]);
    expect(logs()).toContain('RabbitMQ takes messages again; the sink resumed');
    await channel.deleteExchange(refusing);
  });

  it('a broker down for a while pauses the sink: nothing dead-lettered or dropped, all delivered in order after', async () => {
    const proxy = await TcpProxy.start(Number(new URL(AMQP_URL).port || 5672));
    const auth = new URL(AMQP_URL);
    try {
      startSink(undefined, { url: `amqp://${auth.username}:${auth.password}@127.0.0.1:${proxy.port}` });
      await createInstance(store, 'r1', 'rabbit', settings({ rabbitmqEnable: true, events: ['MESSAGE'] }));
      const before = await messages(store, 'r1', 5, 'a');
      await eventually(() => received.length >= 5, 10_000, 'before the outage');
      proxy.down();
      const during = [];
      for (let i = 0; i < 5; i++) {
        during.push(...(await messages(store, 'r1', 4, `d${i}-`)));
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(await store.listDeadLetters('sink-rabbitmq')).toEqual([]);
      expect(received).toHaveLength(5);
      proxy.up();
      await eventually(() => received.length >= 25, 20_000, 'after the outage');
      await new Promise((r) => setTimeout(r, 200));
      expect(received.map((m) => m.properties.messageId as string)).toEqual(
        [...before, ...during].map((e) => e.id),
      );
      expect(await store.listDeadLetters('sink-rabbitmq')).toEqual([]);
    } finally {
      await sink?.stop();
      sink = undefined;
      await proxy.close();
    }
  });

  it('an exchange the broker will not let it declare (declared before with other arguments): the sink waits and retries, the process goes on', async () => {
    const other = `zapwire.test.${randomUUID()}`;
    await channel.assertExchange(other, 'topic', { durable: false, autoDelete: true });
    const { logs } = startSink(undefined, { to: other });
    await createInstance(store, 'r1', 'rabbit', settings({ rabbitmqEnable: true, events: ['MESSAGE'] }));
    await messages(store, 'r1', 2, 'x');
    // The broker closes the channel on the declaration, again and again; nothing is dropped meanwhile.
    await eventually(
      () => logs().filter((l) => l === 'RabbitMQ connect failed').length >= 2,
      10_000,
      'two refused declarations',
    );
    expect(await store.listDeadLetters('sink-rabbitmq')).toEqual([]);
    expect(await store.readCheckpoint('sink-rabbitmq')).not.toBe(await store.headPosition());
  });
});
