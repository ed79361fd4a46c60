import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import {
  SINK_MIGRATIONS_DIR,
  startSinks,
  verifySignature,
  type Sinks,
  type WebhookSettings,
} from '../../../src/sinks/index.ts';
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
  storeInstanceLog,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';
import type { WebhookSink } from '../../../src/sinks/webhook/index.ts';
import { ZapwireError } from '../../../src/domain/errors.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';

interface Body {
  id: string;
  event: string;
  instance: { id: string; name: string };
  position: string;
  data: { text?: string };
}

// Against the in-memory store (exact port semantics, fast) and the real SQL store, which shares its database
// with the queue positions as in production.
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

  const start = async (webhook: WebhookSettings = {}, now?: () => number): Promise<Sinks> => {
    running = await startSinks({
      store,
      db,
      directory,
      logger: silentLogger,
      instanceLog: storeInstanceLog(store),
      ...(now ? { now } : {}),
      config: {
        processMetrics: false,
        subscription: { pollIntervalMs: 50, retryDelayMs: 50 },
        webhook: { timeoutMs: 2_000, backoffBaseMs: 20, probeMaxMs: 100, ...webhook },
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
    await db.query('TRUNCATE zw_webhook_queues, zw_webhook_replays, es_dead_letters');
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
    const ignored = await messages(store, iid('a1'), 1, 'ignored');
    await receiver.waitUntil(() => receiver.accepted().length >= 3, 10_000, '3 deliveries');
    await running!.subscriptions.webhook.waitFor(ignored.at(-1)!.position, 5_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.acceptedBodies<Body>('/alpha').map((b) => b.data.text)).toEqual(['before0', 'before1']);
    expect(receiver.acceptedBodies<Body>('/moved').map((b) => b.data.text)).toEqual(['after0']);
    expect(receiver.requests).toHaveLength(3);
  });

  const sinkOf = (sinks: Sinks): WebhookSink => sinks.webhook as unknown as WebhookSink;
  const queueOf = async (sinks: Sinks, id: string, target: 'instance' | 'global' = 'instance') =>
    (await sinks.webhook.status(id)).queues.find((q) => q.target === target);
  const logLines = async (id: string): Promise<string[]> =>
    (await store.readStream(`wa-${id}`))
      .filter((e) => e.type === 'RuntimeLogged')
      .map((e) => `${String(e.data['level'])}: ${String(e.data['message'])}`);
  const textsOf = (path?: string): string[] =>
    receiver.acceptedBodies<Body>(path).map((b) => b.data.text ?? '');
  const range = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

  it('with WEBHOOK_PIPELINE=1: a 5xx pauses the queue, which keeps per-instance order and loses nothing; a failing instance does not block another', async () => {
    await start({ backoffBaseMs: 10, probeMaxMs: 40, pipeline: 1 });
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
    expect(textsOf('/alpha')).toEqual([...range('a', 40), ...range('a-late', 10)]);
    expect(textsOf('/beta')).toEqual(range('b', 40));
    // Failures happened (500 answers), and zeta's receiver only ever saw its head event, probed.
    expect(receiver.requests.some((r) => r.status === 500)).toBe(true);
    const zeta = receiver.requests
      .filter((r) => r.path === '/zeta')
      .map((r) => (JSON.parse(r.rawBody) as Body).data.text);
    expect(zeta.length).toBeGreaterThan(1);
    expect(new Set(zeta)).toEqual(new Set(['z0']));
    // Nothing was dead-lettered for the outage.
    expect(await store.listDeadLetters('sink-webhook')).toEqual([]);
    const zetaQueue = await queueOf(running!, iid('z1'));
    expect(zetaQueue).toMatchObject({ state: 'paused', lastStatusCode: 503, behind: 5, behindExact: true });
    expect(zetaQueue!.reason).toMatch(/^receiver down since .*HTTP 503/);
    expect(zetaQueue!.oldestUndeliveredAt).toBeInstanceOf(Date);
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

  it('an outage with a burst behind it: nothing dead-lettered, no row per event, all delivered in order once the receiver answers', async () => {
    const sinks = await start({ backoffBaseMs: 20, probeMaxMs: 200, directWaitMs: 50 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    await addInstance(iid('b1'), 'beta', ['MESSAGE']);
    let down = true;
    receiver.respond((request) =>
      request.path === '/alpha' && down ? { status: 503, headers: { 'retry-after': '0' } } : { status: 200 },
    );
    for (let round = 0; round < 10; round += 1) await messages(store, iid('a1'), 100, `r${round}-`);
    const beta = await messages(store, iid('b1'), 20, 'b');
    await receiver.waitUntil(() => receiver.accepted('/beta').length === 20, 10_000, 'beta flows');
    // The reader moved past the whole burst: the paused queue keeps a position, not copies.
    expect(await sinks.subscriptions.webhook.waitFor(beta.at(-1)!.position, 10_000)).toBe(true);
    const rows = await db.query<{ instance_id: string; attached: boolean; state: string }>(
      'SELECT instance_id, attached, state FROM zw_webhook_queues',
    );
    // (beta may have a row too: on a loaded machine its 20 events can take longer than the 50 ms wait.)
    expect(rows.rows.filter((r) => r.instance_id === iid('a1'))).toEqual([
      { instance_id: iid('a1'), attached: false, state: 'paused' },
    ]);
    expect(rows.rows.every((r) => r.instance_id === iid('a1') || r.state === 'delivering')).toBe(true);
    const paused = await queueOf(sinks, iid('a1'));
    expect(paused).toMatchObject({ state: 'paused', mode: 'catching-up', behind: 1_000 });
    // Events that come after someone asked count too (the count of the backlog used to freeze the figure).
    const late = await messages(store, iid('a1'), 7, 'late');
    expect(await sinks.subscriptions.webhook.waitFor(late.at(-1)!.position, 10_000)).toBe(true);
    expect(await queueOf(sinks, iid('a1'))).toMatchObject({
      state: 'paused',
      behind: 1_007,
      behindExact: true,
    });
    // Down for a while: probes only, with the capped backoff.
    await new Promise((r) => setTimeout(r, 1_000));
    const probes = receiver.requests.filter((r) => r.path === '/alpha').length;
    expect(probes).toBeGreaterThan(2);
    expect(probes).toBeLessThan(40);
    down = false;
    const healedAt = Date.now();
    await receiver.waitUntil(() => receiver.accepted('/alpha').length === 1_007, 20_000, 'the backlog');
    const expected = [
      ...Array.from({ length: 10 }, (_, round) => range(`r${round}-`, 100)).flat(),
      ...range('late', 7),
    ];
    expect(textsOf('/alpha')).toEqual(expected);
    // Resumed within one probe interval (200 ms) plus the drain itself.
    const firstAfter = receiver.accepted('/alpha')[0]!.receivedAt;
    expect(firstAfter - healedAt).toBeLessThan(1_000);
    expect(await store.listDeadLetters('sink-webhook')).toEqual([]);
    await eventually(async () => (await queueOf(sinks, iid('a1')))?.mode === 'live', 5_000, 'back to live');
    expect(await queueOf(sinks, iid('a1'))).toMatchObject({ state: 'delivering', behind: 0 });
    // New events flow from the reader again.
    await messages(store, iid('a1'), 3, 'after');
    await receiver.waitUntil(() => receiver.accepted('/alpha').length === 1_010, 5_000, 'after the heal');
    expect(textsOf('/alpha').slice(-3)).toEqual(range('after', 3));
    expect(await logLines(iid('a1'))).toEqual([
      expect.stringMatching(/^warn: webhook receiver down \(HTTP 503/),
    ]);
  });

  it('pipelines up to WEBHOOK_PIPELINE requests per instance on one connection, in log order; a failed one is overtaken by at most the others of its window', async () => {
    await start({ pipeline: 4, backoffBaseMs: 30, probeMaxMs: 30 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    let open = 0;
    let most = 0;
    let failedOnce = false;
    receiver.respond((request) => {
      open += 1;
      most = Math.max(most, open);
      setTimeout(() => (open -= 1), 20);
      const text = (JSON.parse(request.rawBody) as Body).data.text;
      if (text === 'm5' && !failedOnce) {
        failedOnce = true;
        return { status: 500, delayMs: 20 };
      }
      return { status: 200, delayMs: 20 };
    });
    await messages(store, iid('a1'), 20, 'm');
    await receiver.waitUntil(() => receiver.accepted('/alpha').length >= 20, 15_000, '20 accepted');
    const textOf = (r: { rawBody: string }): string => (JSON.parse(r.rawBody) as Body).data.text ?? '';
    // First attempts reach the receiver in log order, all on one connection.
    const firstSeen = [...new Set(receiver.requests.map(textOf))];
    expect(firstSeen).toEqual(range('m', 20));
    expect(new Set(receiver.requests.map((r) => r.remotePort)).size).toBe(1);
    // Several were in flight at once, never more than the window.
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(4);
    // m5 failed once and was sent again; nothing lost or doubled; at most 3 events got ahead of it.
    const accepted = receiver.accepted('/alpha').map(textOf);
    expect([...accepted].sort()).toEqual(range('m', 20).sort());
    expect(receiver.requests.filter((r) => textOf(r) === 'm5').map((r) => r.status)).toEqual([500, 200]);
    expect(accepted.indexOf('m5') - 5).toBeGreaterThanOrEqual(0);
    expect(accepted.indexOf('m5') - 5).toBeLessThanOrEqual(3);
    expect(accepted.filter((t) => t !== 'm5')).toEqual(range('m', 20).filter((t) => t !== 'm5'));
  });

  it('pipelined requests to a receiver that answers one after another do not time out while they wait their turn', async () => {
    await start({ pipeline: 8, timeoutMs: 1_500, backoffBaseMs: 20, probeMaxMs: 20 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    // The first answer takes 1 s (the others queue up behind it), then one answer every 250 ms: the
    // seventh of the next window is answered 1.75 s after it was sent, 250 ms after the one before it.
    let busyUntil = 0;
    receiver.respond((_request, index) => {
      const now = Date.now();
      busyUntil = Math.max(now, busyUntil) + (index === 0 ? 1_000 : 250);
      return { status: 200, delayMs: busyUntil - now };
    });
    await messages(store, iid('a1'), 8, 'm');
    // The receiver records a request when it arrives; the sender counts it when the answer is back.
    await eventually(
      async () =>
        (await running!.metrics.render()).includes(
          `delivered_total{sink="webhook",instance_id="${iid('a1')}",instance="alpha"} 8\n`,
        ),
      15_000,
      'alpha counted 8 deliveries',
    );
    // Each event went out once: none timed out and was sent again.
    expect(receiver.requests.map((r) => (JSON.parse(r.rawBody) as Body).data.text)).toEqual(range('m', 8));
  });

  it('with WEBHOOK_BATCH_MAX sends waiting events together, in order, signed; a refused batch goes on one by one', async () => {
    // One request at a time, so the first answer (a refusal) meets the first batch alone.
    await start({ batchMax: 8, pipeline: 1 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    // A slow receiver, whose first answer refuses the request: events pile up behind each request.
    receiver.respond((_request, index) => ({ status: index === 0 ? 422 : 200, delayMs: 60 }));
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
    expect(texts()).toEqual(range('a', 30));
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
    // The refused first request was a batch: its head went on alone, and none was dead-lettered.
    expect(receiver.requests[0]!.status).toBe(422);
    expect(receiver.requests[0]!.rawBody.startsWith('[')).toBe(true);
    expect(receiver.requests[1]!.rawBody.startsWith('[')).toBe(false);
    expect(await store.listDeadLetters('sink-webhook')).toEqual([]);
  });

  it('a refused event is dead-lettered at once and the rest flows; redelivery sends it again to the current URL', async () => {
    const sinks = await start({ pipeline: 1 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    const answers = [400, 200, 404];
    let n = 0;
    receiver.respond(() => ({ status: answers[n++] ?? 200, body: 'no such thing' }));
    const [m0, m1, m2] = await messages(store, iid('a1'), 3, 'm');
    await receiver.waitUntil(() => receiver.requests.length === 3, 5_000, 'three requests');
    await eventually(
      async () => (await sinks.webhook.deadLetters(iid('a1'))).length === 2,
      5_000,
      'two dead',
    );
    expect(textsOf()).toEqual(['m1']);
    const dead = await sinks.webhook.deadLetters(iid('a1'));
    expect(dead.map((d) => [d.eventId, d.detail['reason'], d.detail['statusCode']])).toEqual([
      [m2!.id, 'refused', 404],
      [m0!.id, 'refused', 400],
    ]);
    expect(dead[1]!.error).toMatch(/^refused by the receiver: HTTP 400: no such thing/);
    expect(await queueOf(sinks, iid('a1'))).toMatchObject({ state: 'refusing', lastStatusCode: 404 });
    void m1;

    // Redelivery: the same event id, to the URL in force now.
    const moved = await configureSinks(
      store,
      iid('a1'),
      settings({ webhookUrl: receiver.url('/moved'), events: ['MESSAGE'] }),
    );
    await sinks.subscriptions.webhook.waitFor(moved, 5_000);
    const replay = await sinks.webhook.redeliver(iid('a1'), dead[1]!.id, 'admin');
    expect(replay).toMatchObject({ eventId: m0!.id, state: 'running' });
    await receiver.waitUntil(() => receiver.accepted('/moved').length === 1, 5_000, 'redelivered');
    const redelivered = receiver.accepted('/moved')[0]!;
    expect(redelivered.headers['x-zapwire-event-id']).toBe(m0!.id);
    expect(redelivered.headers['x-zapwire-delivery-id']).toBe(`replay-${replay!.id}`);
    expect(JSON.parse(redelivered.rawBody)).toMatchObject({ id: m0!.id, data: { text: 'm0' } });
    expect((await sinks.webhook.deadLetters(iid('a1'))).map((d) => d.eventId)).toEqual([m2!.id]);
    await eventually(
      async () => (await sinks.webhook.replays(iid('a1')))[0]?.state === 'done',
      5_000,
      'replay done',
    );
    expect(await sinks.webhook.redeliver('other-instance', dead[0]!.id, 'admin')).toBeUndefined();
  });

  it('408 and 429 mean "down" (the queue pauses and probes), other 4xx refuse the event', async () => {
    // One request at a time: the answers below go to the events in this order.
    const sinks = await start({ backoffBaseMs: 5, probeMaxMs: 10, pipeline: 1 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    const answers = [400, 408, 429, 200, 404, 410];
    let n = 0;
    receiver.respond(() => ({ status: answers[n++] ?? 200, headers: { 'retry-after': '0' } }));
    await messages(store, iid('a1'), 3, 'm');
    await receiver.waitUntil(() => receiver.requests.length === 5, 5_000, 'five requests');
    await eventually(async () => (await sinks.webhook.deadLetters(iid('a1'))).length === 2, 5_000, 'settled');
    // m0: 400 → dead at once; m1: 408, 429 (paused, probed), 200; m2: 404 → dead at once
    expect(receiver.requests.map((r) => [(JSON.parse(r.rawBody) as Body).data.text, r.status])).toEqual([
      ['m0', 400],
      ['m1', 408],
      ['m1', 429],
      ['m1', 200],
      ['m2', 404],
    ]);
    expect((await sinks.webhook.deadLetters(iid('a1'))).map((d) => d.detail['statusCode'])).toEqual([
      404, 400,
    ]);
  });

  it('a request past its timeout counts as the receiver down and is probed again', async () => {
    const sinks = await start({ timeoutMs: 150, backoffBaseMs: 10, probeMaxMs: 20 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    receiver.respond((_request, index) => (index === 0 ? { status: 200, delayMs: 1_000 } : { status: 200 }));
    const started = Date.now();
    await messages(store, iid('a1'), 1, 'slow');
    await receiver.waitUntil(() => receiver.requests.length === 2, 5_000, 'sent again');
    await eventually(async () => (await queueOf(sinks, iid('a1')))?.state === 'delivering', 5_000, 'resumed');
    expect(Date.now() - started).toBeLessThan(900); // did not wait for the slow answer
    expect(await sinks.webhook.deadLetters(iid('a1'))).toEqual([]);
  });

  it('an event older than WEBHOOK_MAX_AGE_HOURS is dead-lettered instead of sent; the queue moves on', async () => {
    let clock = Date.now();
    const sinks = await start({ backoffBaseMs: 10, probeMaxMs: 20, maxAgeMs: 3_600_000 }, () => clock);
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    let down = true;
    receiver.respond(() => (down ? { status: 503 } : { status: 200 }));
    const old = await messages(store, iid('a1'), 3, 'old');
    await eventually(async () => (await queueOf(sinks, iid('a1')))?.state === 'paused', 5_000, 'paused');
    // An hour and more passes (by the sink's clock) while the receiver is down; newer events arrive.
    clock = old[2]!.createdAt.getTime() + 3_600_001;
    await messages(store, iid('a1'), 2, 'new');
    down = false;
    await receiver.waitUntil(() => receiver.accepted().length === 2, 5_000, 'the new ones');
    expect(textsOf()).toEqual(['new0', 'new1']);
    const dead = await sinks.webhook.deadLetters(iid('a1'));
    expect(dead.map((d) => [d.eventId, d.detail['reason']])).toEqual(
      [...old].reverse().map((e) => [e.id, 'expired']),
    );
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

  it('resumes a paused queue after a restart from its position, and forgets a deleted instance', async () => {
    let sinks = await start({ backoffBaseMs: 50, probeMaxMs: 50 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    await addInstance(iid('b1'), 'beta', ['MESSAGE']);
    receiver.respond({ status: 500 });
    await messages(store, iid('a1'), 3);
    await messages(store, iid('b1'), 3);
    await eventually(async () => (await queueOf(sinks, iid('a1')))?.state === 'paused', 5_000, 'paused');
    await eventually(async () => (await queueOf(sinks, iid('b1')))?.state === 'paused', 5_000, 'paused');
    await sinks.stop();
    const stored = await db.query<{ instance_id: string; attached: boolean }>(
      'SELECT instance_id, attached FROM zw_webhook_queues ORDER BY instance_id',
    );
    expect(stored.rows.map((r) => r.attached)).toEqual([false, false]);

    receiver.respond({ status: 200 });
    sinks = await start();
    await receiver.waitUntil(() => receiver.accepted().length === 6, 5_000, 'resumed after restart');
    expect(textsOf('/alpha')).toEqual(['m0', 'm1', 'm2']);

    await deleteInstance(store, iid('b1'));
    await eventually(async () => (await queueOf(sinks, iid('b1'))) === undefined, 5_000, 'forgotten');
    expect(
      (await db.query('SELECT 1 FROM zw_webhook_queues WHERE instance_id = $1', [iid('b1')])).rows,
    ).toEqual([]);
    const afterDelete = await messages(store, iid('b1'), 1, 'after-delete');
    await running!.subscriptions.webhook.waitFor(afterDelete.at(-1)!.position, 5_000);
    expect(receiver.accepted('/beta')).toHaveLength(3);
  });

  it('sends straight from the log: an instance whose receiver keeps up leaves no row', async () => {
    const sinks = await start();
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    const twenty = await messages(store, iid('a1'), 20, 'a');
    await receiver.waitUntil(() => receiver.accepted('/alpha').length === 20, 5_000, '20 events');
    await sinks.subscriptions.webhook.waitFor(twenty.at(-1)!.position, 5_000);
    expect(textsOf('/alpha')).toEqual(range('a', 20));
    expect((await db.query('SELECT 1 FROM zw_webhook_queues')).rows).toEqual([]);
    expect(await queueOf(sinks, iid('a1'))).toMatchObject({ state: 'delivering', mode: 'live', behind: 0 });
  });

  it('a slow receiver detaches its queue after the wait, which reads on from the log; another instance goes on; order holds', async () => {
    const sinks = await start({ directWaitMs: 100 });
    await addInstance(iid('s1'), 'slow', ['MESSAGE']);
    await addInstance(iid('f1'), 'fast', ['MESSAGE']);
    receiver.respond((request) =>
      request.path === '/slow' ? { status: 200, delayMs: 400 } : { status: 200 },
    );
    await messages(store, iid('s1'), 5, 's');
    const started = Date.now();
    await messages(store, iid('f1'), 3, 'f');
    await receiver.waitUntil(() => receiver.accepted('/fast').length === 3, 5_000, 'fast');
    // The fast instance did not wait for the slow one's answers (2 s).
    expect(Date.now() - started).toBeLessThan(1_500);
    await messages(store, iid('s1'), 5, 't');
    await receiver.waitUntil(
      () => receiver.requests.filter((r) => r.path === '/slow').length === 10,
      10_000,
      'slow',
    );
    expect(textsOf('/slow')).toEqual([...range('s', 5), ...range('t', 5)]);
    const rows = await db.query<{ instance_id: string }>('SELECT instance_id FROM zw_webhook_queues');
    expect(rows.rows.map((r) => r.instance_id)).toEqual([iid('s1')]);
    await eventually(async () => (await queueOf(sinks, iid('s1')))?.mode === 'live', 5_000, 'live again');
  });

  it('dead letters: pruned after WEBHOOK_RETENTION_DEAD_HOURS, at most WEBHOOK_MAX_DEAD per instance (and the instance log says so)', async () => {
    const sinks = await start({ maxDead: 2, deadRetentionMs: 3_600_000, pipeline: 1 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    receiver.respond({ status: 400 });
    const refused = await messages(store, iid('a1'), 5, 'd');
    await receiver.waitUntil(() => receiver.requests.length === 5, 5_000, 'five refused');
    await eventually(
      async () => (await sinks.webhook.deadLetters(iid('a1'))).length === 5,
      5_000,
      'five dead',
    );
    expect(await sinkOf(sinks).prune(new Date())).toBe(3);
    expect((await sinks.webhook.deadLetters(iid('a1'))).map((d) => d.eventId)).toEqual([
      refused[4]!.id,
      refused[3]!.id,
    ]);
    await eventually(
      async () => (await logLines(iid('a1'))).some((l) => l.includes('WEBHOOK_MAX_DEAD')),
      5_000,
      'the cap in the instance log',
    );
    expect(await sinkOf(sinks).prune(new Date(Date.now() + 30 * 60_000))).toBe(0);
    expect(await sinkOf(sinks).prune(new Date(Date.now() + 2 * 3_600_000))).toBe(2);
    expect(await sinks.webhook.deadLetters(iid('a1'))).toEqual([]);
  });

  it('rewinds: replays a range of the log by position and by time, with the same event ids, beside the live queue', async () => {
    const sinks = await start({ redeliverPerMinute: 3 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    const first = await messages(store, iid('a1'), 5, 'p');
    await new Promise((r) => setTimeout(r, 30));
    const middle = new Date();
    await new Promise((r) => setTimeout(r, 30));
    const second = await messages(store, iid('a1'), 5, 'q');
    await receiver.waitUntil(() => receiver.accepted().length === 10, 5_000, 'live');
    // By position: after p1, through q1.
    const byPosition = await sinks.webhook.replay(
      iid('a1'),
      { from: first[1]!.position, to: second[1]!.position },
      'admin',
    );
    await receiver.waitUntil(() => receiver.accepted().length === 15, 5_000, 'replayed by position');
    const replayed = receiver.accepted().slice(10);
    expect(replayed.map((r) => (JSON.parse(r.rawBody) as Body).data.text)).toEqual([
      'p2',
      'p3',
      'p4',
      'q0',
      'q1',
    ]);
    expect(replayed.map((r) => r.headers['x-zapwire-event-id'])).toEqual(
      [...first.slice(2), ...second.slice(0, 2)].map((e) => e.id),
    );
    expect(replayed.every((r) => r.headers['x-zapwire-replay'] === byPosition.id)).toBe(true);
    // By time: everything stored from `middle` on.
    await sinks.webhook.replay(iid('a1'), { from: middle.toISOString() }, 'admin');
    await receiver.waitUntil(() => receiver.accepted().length === 20, 5_000, 'replayed by time');
    expect(
      receiver
        .accepted()
        .slice(15)
        .map((r) => (JSON.parse(r.rawBody) as Body).data.text),
    ).toEqual(range('q', 5));
    await eventually(
      async () => (await sinks.webhook.replays(iid('a1'))).every((r) => r.state === 'done'),
      5_000,
      'replays done',
    );
    expect((await sinks.webhook.replays(iid('a1'))).map((r) => r.sent)).toEqual([5, 5]);
    // Bad bounds are a clear 4xx, and the allowance per minute is counted.
    await expect(sinks.webhook.replay(iid('a1'), { from: 'yesterday' }, 'admin')).rejects.toMatchObject({
      code: 'ZW_ERR_VALIDATION',
    });
    await sinks.webhook.replay(iid('a1'), { from: second[4]!.position }, 'admin');
    await expect(sinks.webhook.replay(iid('a1'), { from: 'start' }, 'admin')).rejects.toMatchObject({
      code: 'ZW_ERR_RATE_LIMITED',
    });
  });

  it('rate-limits redeliveries per instance', async () => {
    const sinks = await start({ redeliverPerMinute: 2, pipeline: 1 });
    await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
    receiver.respond({ status: 400 });
    await messages(store, iid('a1'), 3, 'r');
    await eventually(
      async () => (await sinks.webhook.deadLetters(iid('a1'))).length === 3,
      5_000,
      'three dead',
    );
    const [d3, d2, d1] = await sinks.webhook.deadLetters(iid('a1'));
    receiver.respond({ status: 200 });
    await sinks.webhook.redeliver(iid('a1'), d1!.id, 'admin');
    await sinks.webhook.redeliver(iid('a1'), d2!.id, 'admin');
    const refused = await sinks.webhook.redeliver(iid('a1'), d3!.id, 'admin').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(ZapwireError);
    expect(refused).toMatchObject({ code: 'ZW_ERR_RATE_LIMITED' });
    expect((refused as ZapwireError).retryAfter).toBeGreaterThan(0);
    // A dead letter that was redelivered is gone: asking again finds nothing.
    expect(await sinks.webhook.redeliver(iid('a1'), d1!.id, 'admin')).toBeUndefined();
  });

  // Leases are the SQL store's (the in-memory test store runs every subscriber), so the test exists only
  // there: registered for the SQL store, not reported as skipped for the memory one.
  if (kind === 'sql')
    it('works the queues only in the process holding the lease; a second one takes over when it stops, without repeats', async () => {
      const first = await start({ backoffBaseMs: 30, probeMaxMs: 30 });
      const second = await startSinks({
        store,
        db,
        directory,
        logger: silentLogger,
        config: {
          processMetrics: false,
          subscription: { pollIntervalMs: 50, retryDelayMs: 50 },
          cluster: { leaseMs: 600 },
          webhook: { timeoutMs: 2_000, backoffBaseMs: 30, probeMaxMs: 30 },
        },
      });
      try {
        await addInstance(iid('a1'), 'alpha', ['MESSAGE']);
        receiver.respond({ status: 503 });
        await messages(store, iid('a1'), 3, 'h');
        await eventually(async () => (await queueOf(first, iid('a1')))?.state === 'paused', 5_000, 'paused');
        expect(sinkOf(first).dispatcher.active).toBe(true);
        expect(sinkOf(second).dispatcher.active).toBe(false);
        receiver.respond({ status: 200 });
        await receiver.waitUntil(() => receiver.accepted().length === 3, 10_000, 'the first process sends');
        await messages(store, iid('a1'), 3, 'k');
        await receiver.waitUntil(() => receiver.accepted().length === 6, 10_000, 'and goes on');
        await first.stop();
        running = second;
        await messages(store, iid('a1'), 3, 'j');
        await receiver.waitUntil(() => receiver.accepted().length === 9, 10_000, 'the second process sends');
        expect(sinkOf(second).dispatcher.active).toBe(true);
        // A clean hand-over repeats nothing.
        expect(textsOf()).toEqual([...range('h', 3), ...range('k', 3), ...range('j', 3)]);
      } finally {
        await second.stop();
      }
    });
});
