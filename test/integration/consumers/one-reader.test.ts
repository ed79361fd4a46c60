/**
 * One reader of the log at the head: with every projection (messages included), every sink (webhook with
 * an instance and a global target, RabbitMQ, NATS) and a WebSocket client running, an appended event is
 * read from the log once, by the consumer runtime's shared reader, not once per reader. Counted at the
 * SQL log's `readAll` (the adapter below the port), for inbound messages appended one at a time, each
 * waited for until every consumer has it.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { connect as natsConnect } from 'nats';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { EventLog, ReadAllOptions, ReadAllResult } from '../../../src/store/port.ts';
import type * as SqlEventStore from '../../../src/store/sql-event-store.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { customerText, eventually, pairFake, startTestApp, type TestApp } from '../../support/zapwire.ts';

interface ReadRecord {
  readonly options: ReadAllOptions | undefined;
  readonly ids: readonly string[];
}

const reads = vi.hoisted(() => ({ log: [] as ReadRecord[] }));

vi.mock('../../../src/store/sql-event-store.ts', async (importOriginal) => {
  const original = await importOriginal<typeof SqlEventStore>();
  const counted = (log: EventLog): EventLog =>
    new Proxy(log, {
      get(target, key, receiver) {
        if (key === 'readAll') {
          return async (options?: ReadAllOptions): Promise<ReadAllResult> => {
            const result = await target.readAll(options);
            reads.log.push({ options, ids: result.events.map((e) => e.id) });
            return result;
          };
        }
        const value: unknown = Reflect.get(target, key, receiver);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  return {
    ...original,
    createSqlEventLog: (...args: Parameters<typeof original.createSqlEventLog>) =>
      counted(original.createSqlEventLog(...args)),
  };
});

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

describe('the consumer runtime reads the log once per append at the head', () => {
  const tag = randomUUID().slice(0, 8);
  const exchange = `zw-one-reader-${tag}`;
  const prefix = `zwonereader${tag}`;
  let t: TestApp;
  let receiver: WebhookReceiver;
  let global: WebhookReceiver;
  let amqpConnection: amqp.ChannelModel;
  const amqpIds = new Set<string>();
  let nats: Awaited<ReturnType<typeof natsConnect>>;
  const natsIds = new Set<string>();
  const wsIds = new Set<string>();
  let ws: { close(): void } | undefined;

  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
    global = await WebhookReceiver.start();
    t = await startTestApp({
      env: {
        MESSAGES_PROJECTION: 'true',
        AMQP_URL,
        AMQP_EXCHANGE: exchange,
        NATS_URL,
        NATS_SUBJECT_PREFIX: prefix,
        WEBHOOK_GLOBAL_URL: global.url(),
      },
    });
    amqpConnection = await amqp.connect(AMQP_URL);
    const channel = await amqpConnection.createChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, exchange, '#');
    await channel.consume(queue, (message) => {
      if (message) amqpIds.add(String(message.properties.messageId));
    });
    nats = await natsConnect({ servers: NATS_URL });
    const subscription = nats.subscribe(`${prefix}.>`);
    void (async () => {
      for await (const message of subscription) {
        const id = message.headers?.get('Nats-Msg-Id');
        if (id) natsIds.add(id);
      }
    })();
  }, 60_000);

  afterAll(async () => {
    ws?.close();
    await t?.stop();
    await amqpConnection?.close().catch(() => undefined);
    await nats?.close().catch(() => undefined);
    await receiver?.close();
    await global?.close();
  });

  it('3 projections + 3 sinks + the WebSocket tail: one read of each appended event', async () => {
    const token = `onereader-${tag}-token`;
    const created = await t.request('POST', '/instance/create', {
      body: {
        name: `onereader${tag}`,
        token,
        webhookUrl: receiver.url(),
        subscribe: ['ALL'],
        rabbitmqEnable: true,
        natsEnable: true,
        websocketEnable: true,
      },
    });
    expect(created.status).toBe(201);
    const id = created.body['id'] as string;
    const connection = await pairFake(
      t,
      { id, token },
      { jid: '5511777777777@s.whatsapp.net', pushName: 'one' },
    );
    const socket = await t.zapwire.app.injectWS('/ws', { headers: { apikey: token } });
    ws = socket;
    socket.on('message', (data: Buffer) => {
      const frame = JSON.parse(String(data)) as { id: string };
      wsIds.add(frame.id);
    });

    const deliver = async (n: number): Promise<string> => {
      const before = (await t.zapwire.store.readStream(`wa-${id}`)).length;
      connection.deliver(customerText(`M-${tag}-${n}`, `hello ${n}`));
      const event = await eventually(async () => {
        const events = await t.zapwire.store.readStream(`wa-${id}`, { fromVersion: before + 1 });
        return events.find((e) => e.type === 'MessageReceived');
      });
      await eventually(
        async () =>
          (await t.zapwire.projections.waitFor(event.position, 5_000)) &&
          receiver.requests.some((r) => r.rawBody.includes(event.id)) &&
          global.requests.some((r) => r.rawBody.includes(event.id)) &&
          amqpIds.has(event.id) &&
          natsIds.has(event.id) &&
          wsIds.has(event.id),
        15_000,
      );
      return event.id;
    };

    // Warm up: every consumer reaches the head and settles.
    await deliver(0);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const messages = 20;
    const from = reads.log.length;
    const ids: string[] = [];
    for (let n = 1; n <= messages; n++) ids.push(await deliver(n));
    const during = reads.log.slice(from);
    const readsOfEach = ids.map((eventId) => during.filter((r) => r.ids.includes(eventId)).length);
    const perAppend = during.length / messages;
    process.stdout.write(
      `readAll calls per appended message: ${perAppend.toFixed(2)} (${during.length} for ${messages}); reads that returned each message: ${readsOfEach.join(',')}\n`,
    );
    expect(readsOfEach).toEqual(ids.map(() => 1));
  }, 120_000);
});
