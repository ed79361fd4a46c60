/**
 * GET /admin/dead-letters and POST /admin/dead-letters/:id/retry: the one dead-letter store of every reader
 * of the log, listed (newest first, paged, by reader and instance) and sent through the reader that gave up
 * on the entry again: a projection applies it in its own transaction, RabbitMQ and NATS publish it, the
 * webhook queues a redelivery to the instance's or the global webhook. Real PostgreSQL, RabbitMQ, NATS and
 * HTTP receivers.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { connect as natsConnect, type NatsConnection, type JetStreamManager } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPoisonInstance } from '../../support/poison.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { customerText, eventually, pairFake, startTestApp, type TestApp } from '../../support/zapwire.ts';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

interface DeadLetterJson {
  id: string;
  subscription: string;
  instanceId: string | null;
  eventId: string;
  eventType: string;
  stream: string;
  position: string;
  error: string;
  attempts: number;
  failedAt: string;
  detail: Record<string, unknown>;
}

interface Page {
  deadLetters: DeadLetterJson[];
  next: string | null;
}

interface Retry {
  outcome: 'retried' | 'queued' | 'failed';
  message: string;
  detail: Record<string, unknown>;
  deadLetter: DeadLetterJson;
}

describe('admin dead letters', () => {
  const tag = randomUUID().slice(0, 8);
  const exchange = `zw-dead-${tag}`;
  const prefix = `zwdead${tag}`;
  const stream = `ZD_${tag}`;
  let t: TestApp;
  let receiver: WebhookReceiver;
  let broker: amqp.ChannelModel;
  let nats: NatsConnection;
  let jsm: JetStreamManager;
  let token: string;
  let instanceId: string;
  let refuse = true;
  const name = `dead${tag}`;

  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
    receiver.respond(() => (refuse ? { status: 400, body: 'no thanks' } : { status: 200 }));
    nats = await natsConnect({ servers: NATS_URL });
    jsm = await nats.jetstreamManager();
    // Every NATS message of the test is larger than the stream allows: refused for good.
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], max_msg_size: 10 });
    broker = await amqp.connect(AMQP_URL);
    t = await startTestApp({
      env: {
        AMQP_URL,
        AMQP_EXCHANGE: exchange,
        NATS_URL,
        NATS_SUBJECT_PREFIX: prefix,
        WEBHOOK_GLOBAL_URL: receiver.url('/global'),
      },
    });
    token = `${name}-token-123456`;
    const created = await t.request('POST', '/instance/create', {
      body: {
        name,
        token,
        webhookUrl: receiver.url('/hook'),
        subscribe: ['MESSAGE'],
        rabbitmqEnable: true,
        natsEnable: true,
      },
    });
    expect(created.status).toBe(201);
    instanceId = created.body['id'] as string;
    const connection = await pairFake(
      t,
      { id: instanceId, token },
      { jid: '5511777777777@s.whatsapp.net', pushName: name },
    );
    connection.deliver(customerText(`M-${tag}`, 'hello'));
    // The message is refused by everyone: both webhooks (400), RabbitMQ (no queue bound), NATS (too large).
    await eventually(async () => {
      const page = await t.request<Page>('GET', `/admin/dead-letters?instance=${name}`);
      return page.body.deadLetters.length === 4 ? page : undefined;
    }, 20_000);
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await jsm?.streams.delete(stream).catch(() => undefined);
    await nats?.close().catch(() => undefined);
    const channel = await broker?.createChannel().catch(() => undefined);
    await channel?.deleteExchange(exchange).catch(() => undefined);
    await broker?.close().catch(() => undefined);
    await receiver?.close();
  });

  const list = async (query: string): Promise<DeadLetterJson[]> => {
    const page = await t.request<Page>('GET', `/admin/dead-letters${query}`);
    expect(page.status).toBe(200);
    return page.body.deadLetters;
  };
  const one = async (subscription: string): Promise<DeadLetterJson> => {
    const [dead] = await list(`?subscription=${subscription}&instance=${instanceId}`);
    expect(dead).toBeDefined();
    return dead!;
  };
  const retry = (id: string) => t.request<Retry>('POST', `/admin/dead-letters/${id}/retry`);

  it('lists every reader’s dead letters newest first, by reader and instance, in pages', async () => {
    const all = await list(`?instance=${name}`);
    expect(all.map((d) => d.subscription).sort()).toEqual([
      'sink-nats',
      'sink-rabbitmq',
      'sink-webhook',
      'sink-webhook-global',
    ]);
    expect(all.map((d) => Number(d.id))).toEqual([...all.map((d) => Number(d.id))].sort((a, b) => b - a));
    for (const dead of all) {
      expect(dead).toMatchObject({ instanceId, eventType: 'MessageReceived', stream: `wa-${instanceId}` });
    }
    const first = await t.request<Page>('GET', `/admin/dead-letters?instance=${name}&limit=3`);
    expect(first.body.deadLetters).toHaveLength(3);
    expect(first.body.next).toBe(first.body.deadLetters[2]!.id);
    const second = await t.request<Page>(
      'GET',
      `/admin/dead-letters?instance=${name}&limit=3&before=${first.body.next}`,
    );
    expect([...first.body.deadLetters, ...second.body.deadLetters].map((d) => d.id)).toEqual(
      all.map((d) => d.id),
    );
    expect(second.body.next).toBeNull();
    const brokers = await list(`?subscription=sink-rabbitmq,sink-nats&instance=${name}`);
    expect(brokers.map((d) => d.subscription).sort()).toEqual(['sink-nats', 'sink-rabbitmq']);
    expect((await one('sink-nats')).detail).toMatchObject({ statusCode: 400, errCode: 10054 });
  });

  it('refuses what is not the admin’s or not valid, in the error shape', async () => {
    const asTenant = await t.request('GET', '/admin/dead-letters', { apikey: token });
    expect(asTenant.status).toBe(403);
    expect(asTenant.body).toMatchObject({ error: { code: 'ZW_ERR_ADMIN_ONLY' } });
    const retryAsTenant = await t.request('POST', '/admin/dead-letters/1/retry', { apikey: token });
    expect(retryAsTenant.status).toBe(403);
    const unknown = await retry('999999999');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ error: { code: 'ZW_ERR_DEAD_LETTER_NOT_FOUND' } });
    const malformed = await retry('abc');
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject({ error: { code: 'ZW_ERR_VALIDATION' } });
    const badLimit = await t.request('GET', '/admin/dead-letters?limit=0');
    expect(badLimit.status).toBe(400);
    const noSuchInstance = await t.request('GET', '/admin/dead-letters?instance=nobody-here');
    expect(noSuchInstance.status).toBe(404);
    expect(noSuchInstance.body).toMatchObject({ error: { code: 'ZW_ERR_INSTANCE_NOT_FOUND' } });
    // A dead letter no reader of this node retries: 409, with what to check.
    const [event] = await t.zapwire.store.readStream(`wa-${instanceId}`);
    await t.zapwire.store.addDeadLetter('sink-elsewhere', event!, 'boom', 1);
    const [orphan] = await list('?subscription=sink-elsewhere');
    const unavailable = await retry(orphan!.id);
    expect(unavailable.status).toBe(409);
    expect(unavailable.body).toMatchObject({ error: { code: 'ZW_ERR_RETRY_UNAVAILABLE' } });
    await t.zapwire.store.removeDeadLetter('sink-elsewhere', event!.id);
  });

  it('RabbitMQ: publishes it again; unroutable again it stays, once a queue is bound it is delivered and removed', async () => {
    const dead = await one('sink-rabbitmq');
    const again = await retry(dead.id);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ outcome: 'failed', deadLetter: { id: dead.id } });
    expect(again.body.message).toMatch(/RabbitMQ refused it again \(exchange .*, routing key .*\)/);
    expect((await one('sink-rabbitmq')).id).toBe(dead.id);
    const channel = await broker.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, exchange, '#');
    const got: string[] = [];
    await channel.consume(queue, (m) => m && got.push(m.properties.messageId as string), { noAck: true });
    const done = await retry(dead.id);
    expect(done.status).toBe(200);
    expect(done.body.outcome).toBe('retried');
    await eventually(() => got.includes(dead.eventId), 5_000);
    expect(await list(`?subscription=sink-rabbitmq&instance=${instanceId}`)).toEqual([]);
  });

  it('NATS: publishes it again; refused again it stays, once the stream takes it it is removed', async () => {
    const dead = await one('sink-nats');
    const again = await retry(dead.id);
    expect(again.body).toMatchObject({ outcome: 'failed' });
    expect((await one('sink-nats')).attempts).toBe(1);
    await jsm.streams.update(stream, { subjects: [`${prefix}.>`], max_msg_size: -1 });
    const done = await retry(dead.id);
    expect(done.body.outcome).toBe('retried');
    const stored = await jsm.streams.getMessage(stream, { last_by_subj: `${prefix}.${name}.MESSAGE` });
    expect(stored.header.get('Nats-Msg-Id')).toBe(dead.eventId);
    expect(await list(`?subscription=sink-nats&instance=${instanceId}`)).toEqual([]);
  });

  it('webhook: queues a redelivery to the target that refused it, the instance’s or the global webhook', async () => {
    refuse = false;
    for (const [subscription, path] of [
      ['sink-webhook', '/hook'],
      ['sink-webhook-global', '/global'],
    ] as const) {
      const dead = await one(subscription);
      const queued = await retry(dead.id);
      expect(queued.status).toBe(202);
      expect(queued.body).toMatchObject({ outcome: 'queued', detail: { instanceId } });
      await receiver.waitUntil(
        () => receiver.accepted(path).some((r) => r.rawBody.includes(dead.eventId)),
        10_000,
        `the redelivery to ${path}`,
      );
      expect(await list(`?subscription=${subscription}&instance=${instanceId}`)).toEqual([]);
    }
  });

  it('projection: applies it again in its own transaction; failing again it stays, then it lands and goes', async () => {
    const poisonId = randomUUID();
    const taken = `taken${tag}`;
    const first = await t.request<{ id: string }>('POST', '/instance/create', { body: { name: taken } });
    expect(first.status).toBe(201);
    const poison = await appendPoisonInstance(t.zapwire.store, poisonId, taken);
    expect(await t.zapwire.projections.waitFor(poison.position, 10_000)).toBe(true);
    const dead = await eventually(async () => (await list('?subscription=projection:instances'))[0]);
    expect(dead).toMatchObject({ eventId: poison.events[0]!.id, instanceId: null, attempts: 3 });
    const projections = await t.request<Array<{ name: string; deadLetters: number }>>(
      'GET',
      '/admin/projections',
    );
    expect(projections.body.find((p) => p.name === 'instances')?.deadLetters).toBe(1);
    const failed = await retry(dead.id);
    expect(failed.status).toBe(200);
    expect(failed.body.outcome).toBe('failed');
    expect(failed.body.message).toMatch(/cannot apply it/);
    expect((await list('?subscription=projection:instances'))[0]).toMatchObject({ id: dead.id, attempts: 4 });
    // The name is free again: the event applies, in its own transaction with the entry's removal.
    await t.zapwire.db.query('DELETE FROM rm_instances WHERE id = $1', [first.body.id]);
    const applied = await retry(dead.id);
    expect(applied.body.outcome).toBe('retried');
    expect(await list('?subscription=projection:instances')).toEqual([]);
    const row = await t.zapwire.db.query('SELECT id FROM rm_instances WHERE id = $1', [poisonId]);
    expect(row.rows).toHaveLength(1);
    const health = await t.request<{ alerts: string[] }>('GET', '/health', { apikey: null });
    expect(health.body.alerts.join(' ')).not.toMatch(/projection instances skipped/);
  });
});

describe('admin dead letters under API_COMPAT=evolution-go', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { API_COMPAT: 'evolution-go' } });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('answers in the profile’s error shape', async () => {
    const unknown = await t.request('POST', '/admin/dead-letters/12345/retry');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({
      error: 'dead letter 12345 not found: list them with GET /admin/dead-letters',
    });
    const listed = await t.request('GET', '/admin/dead-letters');
    expect(listed).toMatchObject({ status: 200, body: { deadLetters: [], next: null } });
  });
});
