import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { SINK_MIGRATIONS_DIR, startSinks, verifySignature, type Sinks } from '../../../src/sinks/index.ts';
import type { EventStore } from '../../../src/store/port.ts';
import { createSqlEventStore } from '../../../src/store/sql-event-store.ts';
import type { SqlDatabase } from '../../../src/store/sql.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import {
  StaticDirectory,
  assertEnvelope,
  configureSinks,
  createInstance,
  deleteInstance,
  eventually,
  messages,
  mixedEvents,
  silentLogger,
  sinks as settings,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';

interface Body {
  id: string;
  event: string;
  instance: { id: string; name: string };
  position: string;
  data: { text?: string };
}

// Against the in-memory store (exact port semantics, fast) and the real SQL store on PGlite (the embedded
// default), which shares its database with the delivery log as in production.
describe.each(['memory', 'sql'] as const)('webhook sink (%s store)', (kind) => {
  let store: EventStore;
  let sqlStore: EventStore;
  let db: SqlDatabase;
  let database: TestPostgres;
  /** Instance ids unique per test: the SQL store's log outlives a test. */
  let run = '';
  const iid = (name: string): string => `${run}${name}`;
  let receiver: WebhookReceiver;
  let directory: StaticDirectory;
  let running: Sinks | undefined;

  const start = async (webhook: Record<string, unknown> = {}): Promise<Sinks> => {
    running = await startSinks({
      store,
      db,
      directory,
      logger: silentLogger,
      config: {
        processMetrics: false,
        subscription: { pollIntervalMs: 50, retryDelayMs: 50 },
        webhook: { maxAttempts: 4, timeoutMs: 2_000, backoffBaseMs: 20, backoffMaxMs: 100, ...webhook },
      },
    });
    return running;
  };

  const addInstance = async (
    id: string,
    name: string,
    events: string[],
    path = `/${name}`,
  ): Promise<void> => {
    directory.set({
      id,
      name,
      sinks: settings({ webhookUrl: receiver.url(path), events }),
      webhookSecret: `secret-${id}`,
    });
    await createInstance(store, id, name, settings({ webhookUrl: receiver.url(path), events }));
  };

  // One database per file; each test starts from an empty delivery log.
  beforeAll(async () => {
    database = await openTestPostgres({ migrations: [SINK_MIGRATIONS_DIR] });
    db = database.db;
    sqlStore = createSqlEventStore(db);
  });
  afterAll(async () => {
    await sqlStore.close();
    await database.close();
  });

  beforeEach(async () => {
    run = randomUUID().slice(0, 8);
    store = kind === 'memory' ? new MemoryEventStore() : sqlStore;
    await db.query('TRUNCATE zw_webhook_deliveries RESTART IDENTITY');
    receiver = await WebhookReceiver.start();
    directory = new StaticDirectory();
  });

  afterEach(async () => {
    await running?.stop();
    running = undefined;
    await receiver.close();
  });

  it('delivers exactly the subscribed events, signed, in the envelope schema', async () => {
    await start();
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    await addInstance(iid('b1'), 'beta', ['ALL']);
    await addInstance(iid('c1'), 'gamma', ['CALL', 'QR_CODE']);
    // An instance without a webhook gets nothing.
    await createInstance(store, iid('d1'), 'delta', settings({ events: ['ALL'] }));
    for (const id of [iid('a1'), iid('b1'), iid('c1'), iid('d1')]) await mixedEvents(store, id);

    // beta: MESSAGE, CALL, PRESENCE_UPDATE, CONNECTION_UPDATE, QR_CODE; alpha: MESSAGE; gamma: CALL, QR_CODE
    await receiver.waitUntil(() => receiver.accepted().length >= 8, 10_000, '8 deliveries');
    await new Promise((r) => setTimeout(r, 200));
    const byPath = (p: string): string[] => receiver.acceptedBodies<Body>(p).map((b) => b.event);
    expect(byPath('/alpha')).toEqual(['MESSAGE']);
    expect(byPath('/beta')).toEqual(['MESSAGE', 'CALL', 'PRESENCE_UPDATE', 'CONNECTION_UPDATE', 'QR_CODE']);
    expect(byPath('/gamma')).toEqual(['CALL', 'QR_CODE']);
    expect(receiver.requests.filter((r) => r.path === '/delta')).toHaveLength(0);
    expect(receiver.requests).toHaveLength(8);

    for (const request of receiver.requests) {
      const body = JSON.parse(request.rawBody) as Body;
      assertEnvelope(body);
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['x-zapwire-event-id']).toBe(body.id);
      expect(Number(request.headers['x-zapwire-timestamp'])).toBeGreaterThan(1_700_000_000);
      const secret = `secret-${body.instance.id}`;
      const signature = request.headers['x-zapwire-signature'] as string;
      const timestamp = request.headers['x-zapwire-timestamp'] as string;
      expect(verifySignature(request.rawBody, secret, signature, timestamp)).toBe(true);
      expect(verifySignature(request.rawBody, 'another-secret', signature, timestamp)).toBe(false);
      expect(request.rawBody).not.toContain('secret-');
    }
    const connection = receiver
      .acceptedBodies<Body & { data: { state: string } }>('/beta')
      .find((b) => b.event === 'CONNECTION_UPDATE');
    expect(connection?.data.state).toBe('connecting');
    expect(receiver.acceptedBodies<Body>('/beta')[0]!.instance).toEqual({ id: iid('b1'), name: 'beta' });
  });

  it('judges each event by the configuration as of that event', async () => {
    await start();
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    await messages(store, iid('a1'), 2, 'before');
    // Switch the webhook to another path and to CALL only: later MESSAGEs must not go anywhere.
    await configureSinks(
      store,
      iid('a1'),
      settings({ webhookUrl: receiver.url('/moved'), events: ['CALL', 'MESSAGE'] }),
    );
    await messages(store, iid('a1'), 1, 'after');
    await configureSinks(
      store,
      iid('a1'),
      settings({ webhookUrl: receiver.url('/moved'), events: ['CALL'] }),
    );
    await messages(store, iid('a1'), 1, 'ignored');
    await receiver.waitUntil(() => receiver.accepted().length >= 3, 10_000, '3 deliveries');
    await running!.subscriptions.webhook.waitFor(await store.headPosition(), 5_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.acceptedBodies<Body>('/alpha').map((b) => b.data.text)).toEqual(['before0', 'before1']);
    expect(receiver.acceptedBodies<Body>('/moved').map((b) => b.data.text)).toEqual(['after0']);
    expect(receiver.requests).toHaveLength(3);
  });

  it('retries 5xx with backoff, keeps per-instance order, loses nothing; a failing instance does not block another', async () => {
    await start({ maxAttempts: 50, backoffBaseMs: 10, backoffMaxMs: 40 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    await addInstance(iid('b1'), 'beta', ['MESSAGE']);
    await addInstance(iid('z1'), 'zeta', ['MESSAGE']);
    let failUntil = Date.now() + 600;
    receiver.respond((request) => {
      if (request.path === '/zeta') return { status: 503 }; // zeta is down for the whole test
      return Date.now() < failUntil ? { status: 500, body: 'busy' } : { status: 200 };
    });
    const started = Date.now();
    await Promise.all([
      messages(store, iid('a1'), 40, 'a'),
      messages(store, iid('b1'), 40, 'b'),
      messages(store, iid('z1'), 5, 'z'),
    ]);
    await messages(store, iid('a1'), 10, 'a-late');
    failUntil = started + 600;
    await receiver.waitUntil(
      () => receiver.accepted('/alpha').length >= 50 && receiver.accepted('/beta').length >= 40,
      15_000,
      'alpha and beta',
    );
    const alpha = receiver.acceptedBodies<Body>('/alpha').map((b) => b.data.text);
    expect(alpha).toEqual([
      ...Array.from({ length: 40 }, (_, i) => `a${i}`),
      ...Array.from({ length: 10 }, (_, i) => `a-late${i}`),
    ]);
    expect(receiver.acceptedBodies<Body>('/beta').map((b) => b.data.text)).toEqual(
      Array.from({ length: 40 }, (_, i) => `b${i}`),
    );
    // Retries happened (500 answers), and zeta only ever saw its first event, retried.
    expect(receiver.requests.some((r) => r.status === 500)).toBe(true);
    const zeta = receiver.requests
      .filter((r) => r.path === '/zeta')
      .map((r) => (JSON.parse(r.rawBody) as Body).data.text);
    expect(zeta.length).toBeGreaterThan(1);
    expect(new Set(zeta)).toEqual(new Set(['z0']));
    // The receiver records a request before the sender has read the answer: give the counters a moment.
    await eventually(
      async () =>
        (await running!.metrics.render()).includes(
          `delivered_total{sink="webhook",instance_id="${iid('a1')}",instance="alpha"} 50\n`,
        ),
      2_000,
      'alpha counted 50 deliveries',
    );
    expect(await running!.metrics.render()).toMatch(
      new RegExp(
        `zapwire_sink_retried_total\\{sink="webhook",instance_id="${iid('z1')}",instance="zeta"\\} \\d+`,
      ),
    );
  });

  it('with WEBHOOK_BATCH_MAX sends waiting events together, in order, signed; a failed batch goes on one by one', async () => {
    await start({ batchMax: 8 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    // A slow receiver, whose first answer is an error: events pile up behind each request.
    receiver.respond((_request, index) => ({ status: index === 0 ? 500 : 200, delayMs: 60 }));
    await messages(store, iid('a1'), 30, 'a');
    const texts = (): string[] =>
      receiver
        .accepted('/alpha')
        .flatMap((r) => {
          const body = JSON.parse(r.rawBody) as Body | Body[];
          return Array.isArray(body) ? body : [body];
        })
        .map((b) => b.data.text ?? '');
    await receiver.waitUntil(() => texts().length >= 30, 15_000, '30 events');
    expect(texts()).toEqual(Array.from({ length: 30 }, (_, i) => `a${i}`));
    const batches = receiver.accepted('/alpha').filter((r) => r.rawBody.startsWith('['));
    expect(batches.length).toBeGreaterThan(0);
    for (const request of batches) {
      const bodies = JSON.parse(request.rawBody) as Body[];
      expect(bodies.length).toBeGreaterThan(1);
      expect(bodies.length).toBeLessThanOrEqual(8);
      for (const body of bodies) assertEnvelope(body);
      expect(request.headers['x-zapwire-batch-size']).toBe(String(bodies.length));
      expect(request.headers['x-zapwire-event-id']).toBe(bodies.map((b) => b.id).join(','));
      const signature = request.headers['x-zapwire-signature'] as string;
      const timestamp = request.headers['x-zapwire-timestamp'] as string;
      expect(verifySignature(request.rawBody, `secret-${iid('a1')}`, signature, timestamp)).toBe(true);
    }
    // The refused first request was retried: its head went alone, as a single envelope.
    expect(receiver.requests[0]!.status).toBe(500);
    await eventually(
      async () => (await running!.webhook.deliveries(iid('a1'), { status: 'delivered' })).length === 30,
      5_000,
      'all 30 marked delivered',
    );
  });

  it('dead-letters after the last attempt, then redelivers', async () => {
    const sinks = await start({ maxAttempts: 3, backoffBaseMs: 10, backoffMaxMs: 20 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    receiver.respond({ status: 502 });
    const [event] = await messages(store, iid('a1'), 1, 'lost');
    await eventually(
      async () => (await sinks.webhook.deliveries(iid('a1'), { status: 'dead' })).length === 1,
      5_000,
      'dead',
    );
    expect(receiver.requests).toHaveLength(3);
    const [dead] = await sinks.webhook.deliveries(iid('a1'));
    expect(dead).toMatchObject({
      status: 'dead',
      attempts: 3,
      lastStatusCode: 502,
      eventId: event!.id,
      target: 'instance',
    });
    expect(dead!.lastError).toMatch(/attempts exhausted: HTTP 502/);
    const deadLetters = async () =>
      (await store.listDeadLetters('sink-webhook')).filter((d) => d.eventId === event!.id);
    expect(await deadLetters()).toEqual([expect.objectContaining({ eventId: event!.id, attempts: 3 })]);

    // The queue moved on: the next event is delivered once the receiver is back.
    receiver.respond({ status: 200 });
    await messages(store, iid('a1'), 1, 'next');
    await receiver.waitUntil(() => receiver.accepted().length === 1, 5_000, 'next');

    const again = await sinks.webhook.redeliver(iid('a1'), dead!.id);
    expect(again).toMatchObject({ status: 'pending', redeliveryOf: dead!.id, eventId: event!.id });
    await receiver.waitUntil(() => receiver.accepted().length === 2, 5_000, 'redelivery');
    const redelivered = receiver.accepted()[1]!;
    expect(redelivered.headers['x-zapwire-event-id']).toBe(event!.id);
    expect(JSON.parse(redelivered.rawBody)).toMatchObject({ id: event!.id, data: { text: 'lost0' } });
    expect(await deadLetters()).toEqual([]);
    await eventually(
      async () => (await sinks.webhook.deliveries(iid('a1'), { status: 'delivered' })).length === 2,
      5_000,
      'log shows both delivered',
    );
    expect(await sinks.webhook.redeliver('other-instance', dead!.id)).toBeUndefined();
  });

  it('does not retry 4xx other than 408 and 429', async () => {
    const sinks = await start({ maxAttempts: 5, backoffBaseMs: 5, backoffMaxMs: 10 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    const answers = [400, 408, 429, 200, 404, 410];
    let n = 0;
    receiver.respond(() => ({ status: answers[n++] ?? 200, headers: { 'retry-after': '0' } }));
    await messages(store, iid('a1'), 3, 'm');
    await eventually(
      async () =>
        (await sinks.webhook.deliveries(iid('a1'))).length === 3 &&
        (await sinks.webhook.deliveries(iid('a1'), { status: 'pending' })).length === 0,
      5_000,
      'settled',
    );
    const log = (await sinks.webhook.deliveries(iid('a1'))).reverse();
    // m0: 400 → dead at once; m1: 408, 429, 200 → delivered on the 3rd; m2: 404 → dead at once
    expect(log.map((d) => [d.status, d.attempts, d.lastStatusCode])).toEqual([
      ['dead', 1, 400],
      ['delivered', 3, 200],
      ['dead', 1, 404],
    ]);
    expect(receiver.requests).toHaveLength(5);
  });

  it('gives up on a request after the timeout and retries it', async () => {
    const sinks = await start({ timeoutMs: 150, backoffBaseMs: 10, backoffMaxMs: 20 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    receiver.respond((_request, index) => (index === 0 ? { status: 200, delayMs: 1_000 } : { status: 200 }));
    const started = Date.now();
    await messages(store, iid('a1'), 1, 'slow');
    await eventually(
      async () => (await sinks.webhook.deliveries(iid('a1'), { status: 'delivered' })).length === 1,
      5_000,
      'delivered on the second attempt',
    );
    expect(Date.now() - started).toBeLessThan(900); // did not wait for the slow answer
    const [delivery] = await sinks.webhook.deliveries(iid('a1'));
    expect(delivery).toMatchObject({ attempts: 2, lastStatusCode: 200 });
    expect(receiver.requests).toHaveLength(2);
  });

  it('sends every subscribed event to the global webhook too, signed with the global secret', async () => {
    const global = await WebhookReceiver.start();
    try {
      await start({ globalUrl: global.url('/all'), globalSecret: 'global-secret' });
      await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
      await createInstance(store, iid('n1'), 'nohook', settings({ events: ['CALL'] }));
      directory.set({
        id: iid('n1'),
        name: 'nohook',
        sinks: settings({ events: ['CALL'] }),
        webhookSecret: 's',
      });
      await mixedEvents(store, iid('a1'));
      await mixedEvents(store, iid('n1'));
      await global.waitUntil(() => global.accepted().length >= 2, 5_000, 'global');
      await receiver.waitUntil(() => receiver.accepted().length >= 1, 5_000, 'instance hook');
      await new Promise((r) => setTimeout(r, 200));
      // Order holds per instance; two instances' queues run side by side, so compare as a set.
      expect(
        global
          .acceptedBodies<Body>()
          .map((b) => `${b.instance.name}:${b.event}`)
          .sort(),
      ).toEqual(['alpha:MESSAGE', 'nohook:CALL']);
      for (const r of global.requests) {
        const [signature, timestamp] = [r.headers['x-zapwire-signature'], r.headers['x-zapwire-timestamp']];
        expect(verifySignature(r.rawBody, 'global-secret', signature as string, timestamp as string)).toBe(
          true,
        );
      }
      expect(receiver.acceptedBodies<Body>().map((b) => b.event)).toEqual(['MESSAGE']);
    } finally {
      await global.close();
    }
  });

  it('purges a deleted instance and resumes pending deliveries after a restart', async () => {
    let sinks = await start({ maxAttempts: 100, backoffBaseMs: 50, backoffMaxMs: 50 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    await addInstance(iid('b1'), 'beta', ['MESSAGE']);
    receiver.respond({ status: 500 });
    await messages(store, iid('a1'), 3);
    await messages(store, iid('b1'), 3);
    await eventually(async () => (await sinks.webhook.deliveries(iid('a1'))).length === 3, 5_000, 'enqueued');
    await sinks.stop();
    expect((await sinks.webhook.deliveries(iid('a1'), { status: 'pending' })).length).toBe(3);

    receiver.respond({ status: 200 });
    sinks = await start();
    await receiver.waitUntil(() => receiver.accepted().length === 6, 5_000, 'resumed after restart');
    expect(receiver.acceptedBodies<Body>('/alpha').map((b) => b.data.text)).toEqual(['m0', 'm1', 'm2']);

    await deleteInstance(store, iid('b1'));
    await eventually(async () => (await sinks.webhook.deliveries(iid('b1'))).length === 0, 5_000, 'purged');
    await messages(store, iid('b1'), 1, 'after-delete');
    await running!.subscriptions.webhook.waitFor(await store.headPosition(), 5_000);
    expect(receiver.accepted('/beta')).toHaveLength(3);
  });
});
