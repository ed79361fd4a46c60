/**
 * Webhook sink hardening (#14): the signature covers the timestamp (a receiver can refuse replays and
 * moved timestamps), and a shutdown aborts requests in flight instead of waiting for slow receivers,
 * leaving their deliveries pending for the next start. Plus the Evolution GO body (API_COMPAT).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SINK_MIGRATIONS_DIR, startSinks, verifySignature, type Sinks } from '../../../src/sinks/index.ts';
import type { EventStore } from '../../../src/store/port.ts';
import { createSqlEventStore } from '../../../src/store/sql-event-store.ts';
import type { SqlDatabase } from '../../../src/store/sql.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';
import { WebhookReceiver, type ReceivedRequest } from '../../support/webhook-receiver.ts';
import {
  StaticDirectory,
  createInstance,
  messages,
  mixedEvents,
  silentLogger,
  sinks as settings,
} from './support/fixtures.ts';

let database: TestPostgres;
let db: SqlDatabase;
let store: EventStore;
let receiver: WebhookReceiver;
let directory: StaticDirectory;
let running: Sinks | undefined;
let id = '';

const start = async (
  webhook: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Promise<Sinks> => {
  running = await startSinks({
    store,
    db,
    directory,
    logger: silentLogger,
    config: {
      processMetrics: false,
      subscription: { pollIntervalMs: 50, retryDelayMs: 50 },
      webhook: { timeoutMs: 20_000, backoffBaseMs: 20, probeMaxMs: 100, ...webhook },
      ...extra,
    },
  });
  return running;
};

const addInstance = async (events: string[] = ['MESSAGE']): Promise<void> => {
  const sinks = settings({ webhookUrl: receiver.url('/hook'), events });
  directory.set({ id, name: 'alpha', sinks, webhookSecret: 'whsec-alpha' });
  await createInstance(store, id, 'alpha', sinks);
};

beforeAll(async () => {
  database = await openTestPostgres({ migrations: [SINK_MIGRATIONS_DIR] });
  db = database.db;
  store = createSqlEventStore(db);
});
afterAll(async () => {
  await store.close();
  await database.close();
});
beforeEach(async () => {
  id = `h-${randomUUID().slice(0, 8)}`;
  receiver = await WebhookReceiver.start();
  directory = new StaticDirectory();
});
afterEach(async () => {
  await running?.stop();
  running = undefined;
  await receiver.close();
});

/**
 * The receiver docs/events.md describes: signature over timestamp and body, a 5-minute window, and the
 * event ids already seen. Returns the status it would answer.
 */
function makeVerifyingReceiver(secret: string): (request: ReceivedRequest, nowMs: number) => number {
  const seen = new Set<string>();
  return (request, nowMs) => {
    const signature = request.headers['x-zapwire-signature'] as string | undefined;
    const timestamp = request.headers['x-zapwire-timestamp'] as string | undefined;
    if (!verifySignature(request.rawBody, secret, signature, timestamp, { nowMs })) return 401;
    const eventId = request.headers['x-zapwire-event-id'] as string;
    if (seen.has(eventId)) return 200; // a repeat: acknowledged, not processed again
    seen.add(eventId);
    return 202;
  };
}

describe('webhook signature over timestamp and body', () => {
  it('lets a receiver refuse a moved timestamp, a stale replay and a forged body', async () => {
    await start();
    await addInstance();
    await messages(store, id, 1);
    await receiver.waitUntil(() => receiver.accepted().length === 1, 10_000, 'one delivery');
    const genuine = receiver.accepted()[0]!;
    const sentAt = Number(genuine.headers['x-zapwire-timestamp']) * 1000;
    expect(Math.abs(sentAt - Date.now())).toBeLessThan(60_000);

    const receive = makeVerifyingReceiver('whsec-alpha');
    expect(receive(genuine, sentAt)).toBe(202);
    // The same request again, at once (a retry or a replay inside the window): recognised by its id.
    expect(receive(genuine, sentAt + 1_000)).toBe(200);
    // Replayed an hour later as captured: the timestamp is too old.
    const replay = { ...genuine, headers: { ...genuine.headers, 'x-zapwire-event-id': 'other-id' } };
    expect(receive(replay, sentAt + 3_600_000)).toBe(401);
    // Replayed an hour later with a fresh timestamp: the signature no longer matches.
    const fresh = String(Math.floor((sentAt + 3_600_000) / 1000));
    expect(
      receive(
        { ...replay, headers: { ...replay.headers, 'x-zapwire-timestamp': fresh } },
        sentAt + 3_600_000,
      ),
    ).toBe(401);
    // Another body under the genuine headers.
    expect(receive({ ...replay, rawBody: genuine.rawBody.replace('m0', 'mX') }, sentAt)).toBe(401);
    // The wrong secret.
    expect(makeVerifyingReceiver('whsec-other')(genuine, sentAt)).toBe(401);
  });
});

describe('shutdown with webhook requests in flight', () => {
  const textsOf = (requests: readonly { rawBody: string }[]): string[] =>
    requests.map((r) => (JSON.parse(r.rawBody) as { data: { text: string } }).data.text);

  it('gives answers that come within the grace their time: a clean stop repeats nothing', async () => {
    let sinks = await start();
    await addInstance();
    receiver.respond({ status: 200, delayMs: 400 });
    await messages(store, id, 3);
    await receiver.waitUntil(() => receiver.requests.length === 3, 10_000, 'three requests in flight');
    await sinks.stop();
    running = undefined;
    receiver.respond({ status: 200 });
    sinks = await start();
    await messages(store, id, 1, 'after');
    await receiver.waitUntil(() => receiver.requests.length === 4, 10_000, 'the next event');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(textsOf(receiver.requests)).toEqual(['m0', 'm1', 'm2', 'after0']);
  });

  it('cuts a receiver slower than the grace within seconds; the cut events go out at the next start, same ids', async () => {
    let sinks = await start();
    await addInstance();
    // A receiver that takes its time: far longer than a shutdown may.
    receiver.respond({ status: 200, delayMs: 30_000 });
    await messages(store, id, 2);
    // Pipelined (the default): both requests go out on the queue's connection before any answer.
    await receiver.waitUntil(() => receiver.requests.length === 2, 10_000, 'both requests in flight');
    expect(textsOf(receiver.requests)).toEqual(['m0', 'm1']);

    const began = Date.now();
    await sinks.stop();
    running = undefined;
    expect(Date.now() - began).toBeLessThan(5_000);
    // The queue is recorded behind both events: a restart reads them from the log again.
    const rows = await db.query<{ attached: boolean }>(
      'SELECT attached FROM zw_webhook_queues WHERE instance_id = $1',
      [id],
    );
    expect(rows.rows).toEqual([{ attached: false }]);

    receiver.respond({ status: 200 });
    sinks = await start();
    await receiver.waitUntil(() => receiver.requests.length === 4, 10_000, 'both sent again');
    // The receiver had read the cut requests' bodies (it never got an answer back): sent again, same ids.
    const after = receiver.requests.slice(2);
    expect(after.map((r) => r.headers['x-zapwire-event-id'])).toEqual(
      receiver.requests.slice(0, 2).map((r) => r.headers['x-zapwire-event-id']),
    );
    expect(textsOf(after)).toEqual(['m0', 'm1']);
  });
});

describe('API_COMPAT=evolution-go', () => {
  it("sends Evolution GO's webhook body: whatsmeow names, no token, nothing for events it has no counterpart of", async () => {
    await start({}, { apiCompat: 'evolution-go', qrCodeMaxCount: 5 });
    await addInstance(['ALL']);
    // MESSAGE, CALL, PRESENCE_UPDATE, (RuntimeLogged), CONNECTION_UPDATE (starting: nothing), QR_CODE
    const events = await mixedEvents(store, id);
    await receiver.waitUntil(() => receiver.accepted().length >= 4, 10_000, 'four deliveries');
    await running!.subscriptions.webhook.waitFor(events.at(-1)!.position, 5_000);
    await new Promise((r) => setTimeout(r, 200));
    const bodies = receiver.acceptedBodies<Record<string, unknown>>();
    expect(bodies.map((b) => b['event'])).toEqual(['Message', 'CallOffer', 'Presence', 'QRCode']);
    for (const body of bodies) {
      expect(Object.keys(body).filter((k) => k !== 'state')).toEqual([
        'data',
        'event',
        'instanceId',
        'instanceName',
      ]);
      expect(body).toMatchObject({ instanceId: id, instanceName: 'alpha' });
    }
    expect(bodies[0]!['data']).toMatchObject({
      Info: { ID: 'x1', Chat: 'c', Sender: 's', IsFromMe: false, IsGroup: false, Type: 'text' },
      Message: { conversation: 'hi' },
    });
    expect(bodies[2]).toMatchObject({ state: 'online', data: { From: 's', Unavailable: false } });
    expect(bodies[3]!['data']).toEqual({
      qrcode: expect.stringMatching(/^data:image\/png;base64,/) as unknown,
      code: 'qr',
      count: 1,
      maxCount: 5,
    });
    // The event id still travels with each request, for deduplication (sent straight from the log: no rows).
    const delivered = ['MessageReceived', 'CallReceived', 'PresenceUpdated', 'QrCodeIssued'];
    expect(receiver.accepted().map((r) => r.headers['x-zapwire-event-id'])).toEqual(
      events.filter((e) => delivered.includes(e.type)).map((e) => e.id),
    );
    const metrics = await running!.metrics.render();
    expect(metrics).toMatch(new RegExp(`zapwire_sink_delivered_total\\{[^}]*instance="alpha"[^}]*\\} 4`));
  });
});
