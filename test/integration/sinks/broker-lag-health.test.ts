/**
 * A broker that stops taking messages shows in the health of each instance it carries: the pipeline link
 * says how many of the instance's events RabbitMQ and NATS are behind, since when, and why; once the brokers
 * take messages again the instance is healthy. Real RabbitMQ and NATS behind TCP proxies that go down.
 */
import { randomUUID } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { connect as natsConnect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customerText, eventually, pairFake, startTestApp, type TestApp } from '../../support/zapwire.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

interface LinkReport {
  link: string;
  state: string;
  figure: number | null;
  reason: string | null;
}

interface Health {
  state: string;
  reason: string | null;
  links: LinkReport[];
}

const tag = randomUUID().slice(0, 8);
const exchange = `zapwire.test.lag.${tag}`;
const prefix = `zlag${tag}`;
const name = `lagging-${tag}`;
const token = `${name}-token-123456`;

let t: TestApp;
let rabbitProxy: TcpProxy;
let natsProxy: TcpProxy;
let broker: ChannelModel;
let channel: Channel;
let nats: NatsConnection;
let instanceId: string;
const rabbitSeen: string[] = [];
const natsSeen: string[] = [];
let serial = 0;

function deliverMessage(): void {
  serial += 1;
  t.fake.live(instanceId).deliver(customerText(`LAG-${tag}-${serial}`, `message ${serial}`));
}

async function pipeline(): Promise<{ health: Health; link: LinkReport }> {
  const reply = await t.request<Health>('GET', `/instance/${instanceId}/health`, { apikey: token });
  expect(reply.status).toBe(200);
  const link = reply.body.links.find((l) => l.link === 'pipeline');
  if (!link) throw new Error(`no pipeline link in ${JSON.stringify(reply.body)}`);
  return { health: reply.body, link };
}

beforeAll(async () => {
  rabbitProxy = await TcpProxy.start(Number(new URL(AMQP_URL).port || 5672));
  natsProxy = await TcpProxy.start(Number(new URL(NATS_URL).port || 4222));
  broker = await amqp.connect(AMQP_URL);
  channel = await broker.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, exchange, '#');
  await channel.consume(queue, (m) => m && rabbitSeen.push(m.content.toString()), { noAck: true });
  nats = await natsConnect({ servers: NATS_URL });
  nats.subscribe(`${prefix}.>`, { callback: (_e, m) => natsSeen.push(new TextDecoder().decode(m.data)) });
  await nats.flush();
  const amqpUrl = new URL(AMQP_URL);
  amqpUrl.hostname = '127.0.0.1';
  amqpUrl.port = String(rabbitProxy.port);
  t = await startTestApp({
    env: {
      AMQP_URL: amqpUrl.toString(),
      AMQP_EXCHANGE: exchange,
      NATS_URL: `nats://127.0.0.1:${natsProxy.port}`,
      NATS_SUBJECT_PREFIX: prefix,
      HEALTH_SWEEP_MS: '100',
      // The fake connection has no ping: each ping turn judges the links without one.
      HEALTH_PING_INTERVAL_MS: '500',
      HEALTH_SINK_LAG_MS: '1000',
    },
  });
  const created = await t.request('POST', '/instance/create', {
    body: { name, token, subscribe: ['MESSAGE'], rabbitmqEnable: true, natsEnable: true },
  });
  expect(created.status).toBe(201);
  instanceId = created.body['id'] as string;
  await pairFake(t, { id: instanceId, token }, { jid: '5511777777777@s.whatsapp.net', pushName: name });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await channel?.deleteExchange(exchange).catch(() => undefined);
  await broker?.close().catch(() => undefined);
  await nats?.close().catch(() => undefined);
  await rabbitProxy?.close();
  await natsProxy?.close();
});

describe('the pipeline link and the brokers', () => {
  it('says how far RabbitMQ and NATS are behind for the instance while they are down, and heals with them', async () => {
    deliverMessage();
    await eventually(() => rabbitSeen.length === 1 && natsSeen.length === 1, 10_000);
    await eventually(async () => ((await pipeline()).link.state === 'ok' ? true : undefined), 10_000);

    rabbitProxy.down();
    natsProxy.down();
    for (let i = 0; i < 3; i++) deliverMessage();
    const lagging = await eventually(async () => {
      const now = await pipeline();
      return now.link.state === 'degraded' &&
        /rabbitmq 3 events behind/.test(now.link.reason ?? '') &&
        /nats 3 events behind/.test(now.link.reason ?? '')
        ? now
        : undefined;
    }, 20_000);
    expect(lagging.health.state).toBe('degraded');
    expect(lagging.link.figure).toBe(3);
    expect(lagging.link.reason).toMatch(/rabbitmq 3 events behind, oldest \d+ s/);

    rabbitProxy.up();
    natsProxy.up();
    await eventually(() => rabbitSeen.length === 4 && natsSeen.length === 4, 60_000);
    await eventually(async () => ((await pipeline()).link.state === 'ok' ? true : undefined), 10_000);
    expect((await pipeline()).health.state).not.toBe('degraded');
  }, 120_000);
});
