/**
 * Issue 22 item 9: tenants whose names differ only in characters a routing key cannot carry (`acme.corp`
 * and `acme_corp`, names the Evolution GO profile accepts) get different RabbitMQ routing keys and NATS
 * subjects, so a queue bound to one tenant's key, or a subscription to its subject, sees none of the
 * other tenant's events. Real RabbitMQ (127.0.0.1:5672) and NATS (127.0.0.1:4222), the whole app.
 */
import { randomUUID } from 'node:crypto';
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = `nats://127.0.0.1:${Number(process.env['NATS_PORT'] ?? 4222)}`;

let t: TestApp;
let broker: ChannelModel;
let nats: NatsConnection;
const exchange = `zapwire.test.${randomUUID()}`;
const prefix = `zt${randomUUID().slice(0, 8)}`;
const boundToUnderscore: ConsumeMessage[] = [];
const everything: ConsumeMessage[] = [];
const subjectOfUnderscore: string[] = [];

beforeAll(async () => {
  broker = await amqp.connect(AMQP_URL);
  const channel = await broker.createChannel();
  // As the sink declares it; deleted at the end.
  await channel.assertExchange(exchange, 'topic', { durable: true });
  const one = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(one.queue, exchange, 'acme_corp.#');
  await channel.consume(one.queue, (m) => m && boundToUnderscore.push(m), { noAck: true });
  const all = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(all.queue, exchange, '#');
  await channel.consume(all.queue, (m) => m && everything.push(m), { noAck: true });
  nats = await connect({ servers: NATS_URL });
  nats.subscribe(`${prefix}.acme_corp.>`, { callback: (_, m) => subjectOfUnderscore.push(m.subject) });
  await nats.flush();
  t = await startTestApp({
    env: {
      API_COMPAT: 'evolution-go',
      AMQP_URL,
      AMQP_EXCHANGE: exchange,
      NATS_URL,
      NATS_SUBJECT_PREFIX: prefix,
    },
  });
});
afterAll(async () => {
  await t?.stop();
  await nats?.close();
  const channel = await broker?.createChannel();
  await channel?.deleteExchange(exchange);
  await broker?.close();
});

describe('routing keys and subjects per tenant', () => {
  it('keeps acme.corp out of what is bound to acme_corp', async () => {
    const ids: Record<string, string> = {};
    for (const name of ['acme.corp', 'acme_corp']) {
      const token = `${name}-token-${randomUUID()}`;
      const created = await t.request<{ data: { id: string } }>('POST', '/instance/create', {
        body: { name, token },
      });
      expect(created.status).toBe(200);
      ids[name] = created.body.data.id;
      const connected = await t.request('POST', '/instance/connect', {
        apikey: token,
        body: { subscribe: ['ALL'], rabbitmqEnable: 'true', natsEnable: 'true' },
      });
      expect(connected.status).toBe(200);
      const connection = await eventually(() => t.fake.connection(ids[name]!));
      connection.issueQr();
    }
    // Both tenants' QR codes reached the broker; only acme_corp's went to its queue and its subject.
    await eventually(
      () =>
        everything.filter((m) => m.fields.routingKey.endsWith('.QR_CODE')).length >= 2 &&
        subjectOfUnderscore.length >= 1,
      10_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    const owners = (messages: ConsumeMessage[]): string[] => [
      ...new Set(messages.map((m) => String(m.properties.headers?.['x-zapwire-instance-id']))),
    ];
    expect(owners(everything).sort()).toEqual([ids['acme.corp'], ids['acme_corp']].sort());
    expect(owners(boundToUnderscore)).toEqual([ids['acme_corp']]);
    expect(new Set(everything.map((m) => m.fields.routingKey.split('.')[0]))).toEqual(
      new Set(['acme%2Ecorp', 'acme_corp']),
    );
    expect(new Set(subjectOfUnderscore.map((s) => s.split('.')[1]))).toEqual(new Set(['acme_corp']));
  });
});
