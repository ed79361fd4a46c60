import type { AddressInfo } from 'node:net';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { installAuth, type Caller } from '../../../src/http/auth.ts';
import { instanceWebhookRoutes } from '../../../src/http/routes/instance-webhook.ts';
import { metricsRoutes } from '../../../src/http/routes/metrics.ts';
import { wsRoutes } from '../../../src/http/routes/ws.ts';
import { installErrorHandler } from '../../../src/http/errors.ts';
import { SINK_MIGRATIONS_DIR, startSinks, WS_CLOSE, type Sinks } from '../../../src/sinks/index.ts';
import type { SqlDatabase } from '../../../src/store/sql.ts';
import {
  StaticDirectory,
  assertEnvelope,
  createInstance,
  eventually,
  messages,
  mixedEvents,
  silentLogger,
  sinks as settings,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';

const ADMIN = 'admin-key-0123456789abcdef';
const TOKENS: Record<string, string> = { 'token-alpha': 'a1', 'token-beta': 'b1' };
const NAMES: Record<string, string> = { a1: 'alpha', b1: 'beta', c1: 'gamma' };

interface Frame {
  id: string;
  event: string;
  instance: { id: string; name: string };
  position: string;
  data: { text?: string };
}

interface Client {
  ws: WebSocket;
  frames: Frame[];
  closed: Promise<{ code: number; reason: string }>;
}

describe('WebSocket sink and the events routes', () => {
  let db: SqlDatabase;
  let database: TestPostgres;
  let store: MemoryEventStore;
  let sinks: Sinks;
  let app: FastifyInstance;
  let base: string;
  const rotated: string[] = [];

  const sockets: WebSocket[] = [];
  const open = (query: string, headers: Record<string, string> = {}): Promise<Client> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base}/ws${query}`, { headers });
      sockets.push(ws);
      const frames: Frame[] = [];
      const closed = new Promise<{ code: number; reason: string }>((r) =>
        ws.on('close', (code, reason) => r({ code, reason: reason.toString() })),
      );
      ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
      ws.once('open', () => resolve({ ws, frames, closed }));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });

  beforeAll(async () => {
    database = await openTestPostgres({ migrations: [SINK_MIGRATIONS_DIR] });
    db = database.db;
  });
  afterAll(async () => {
    await database.close();
  });

  /** The answer of a refused upgrade: its status and JSON body. */
  const refused = (query: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: { error?: { code?: string; message?: string } } }>(
      (resolve, reject) => {
        const ws = new WebSocket(`${base}/ws${query}`, { headers });
        sockets.push(ws);
        ws.once('open', () => reject(new Error('the upgrade was accepted')));
        ws.once('unexpected-response', (_req, res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as never }));
        });
        ws.once('error', () => undefined);
      },
    );

  let directory = new StaticDirectory();
  const boot = async (
    maxBufferedBytes?: number,
    limits?: { maxConnectionsPerKey: number; maxReplaysPerKey: number },
    webhook?: { readonly redeliverPerMinute?: number },
  ): Promise<void> => {
    store = new MemoryEventStore();
    await db.query('TRUNCATE zw_webhook_queues, zw_webhook_replays');
    sinks = await startSinks({
      store,
      db,
      directory,
      logger: silentLogger,
      config: {
        processMetrics: true,
        subscription: { pollIntervalMs: 50, retryDelayMs: 50 },
        ...(maxBufferedBytes || limits ? { websocket: { maxBufferedBytes, ...limits } } : {}),
        ...(webhook ? { webhook } : {}),
      },
    });
    app = Fastify();
    installErrorHandler(app);
    installAuth(app, {
      authenticate: async (key): Promise<Caller | undefined> => {
        if (key === ADMIN) return { principal: { role: 'admin' } };
        const id = TOKENS[key];
        return id ? { principal: { role: 'instance', instanceId: id } } : undefined;
      },
      findInstance: async (ref) => {
        const id = NAMES[ref] ? ref : Object.keys(NAMES).find((k) => NAMES[k] === ref.toLowerCase());
        return id ? { id, name: NAMES[id]! } : undefined;
      },
    });
    await app.register(websocket);
    await app.register(wsRoutes, { sinks });
    await app.register(metricsRoutes, { metrics: sinks.metrics });
    await app.register(instanceWebhookRoutes, {
      sinks,
      rotateWebhookSecret: async (id) => {
        rotated.push(id);
        return `new-secret-${id}`;
      },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  };

  beforeEach(() => {
    rotated.length = 0;
    directory = new StaticDirectory();
  });
  afterEach(async () => {
    for (const ws of sockets.splice(0)) ws.terminate();
    await sinks.stop();
    await app.close();
  });

  it('authenticates, scopes instance tokens to their instance, and filters by websocketEnable and ?events=', async () => {
    await boot();
    await createInstance(store, 'a1', 'alpha', settings({ websocketEnable: true, events: ['ALL'] }));
    await createInstance(
      store,
      'b1',
      'beta',
      settings({ websocketEnable: true, events: ['MESSAGE', 'CALL'] }),
    );
    await createInstance(store, 'c1', 'gamma', settings({ websocketEnable: false, events: ['ALL'] }));

    await expect(open('')).rejects.toThrow('HTTP 401');
    await expect(open('?apikey=wrong')).rejects.toThrow('HTTP 401');
    await expect(open('?events=NOPE', { apikey: ADMIN })).rejects.toThrow('HTTP 400');
    await expect(open('?instance=beta&token=token-alpha')).rejects.toThrow('HTTP 403');
    await expect(open('?from=', { apikey: 'token-alpha' })).resolves.toBeDefined();

    const admin = await open('', { apikey: ADMIN });
    const adminCalls = await open(`?events=call&apikey=${ADMIN}`);
    const alpha = await open('?token=token-alpha');
    const betaOnly = await open('?instance=beta', { apikey: ADMIN });
    for (const id of ['a1', 'b1', 'c1']) await mixedEvents(store, id);
    await eventually(() => admin.frames.length >= 7, 5_000, 'admin frames');
    await new Promise((r) => setTimeout(r, 200));

    const tags = (c: Client): string[] => c.frames.map((f) => `${f.instance.name}:${f.event}`);
    expect(tags(admin)).toEqual([
      'alpha:MESSAGE',
      'alpha:CALL',
      'alpha:PRESENCE_UPDATE',
      'alpha:CONNECTION_UPDATE',
      'alpha:QR_CODE',
      'beta:MESSAGE',
      'beta:CALL',
    ]);
    expect(tags(adminCalls)).toEqual(['alpha:CALL', 'beta:CALL']);
    expect(tags(alpha)).toEqual(tags(admin).filter((t) => t.startsWith('alpha:')));
    expect(tags(betaOnly)).toEqual(['beta:MESSAGE', 'beta:CALL']);
    for (const f of admin.frames) assertEnvelope(f);
    for (const c of [admin, adminCalls, alpha, betaOnly]) c.ws.close();
  });

  it('replays from ?from= and joins the live tail without gap or repeat while events keep coming', async () => {
    await boot();
    await createInstance(store, 'a1', 'alpha', settings({ websocketEnable: true, events: ['MESSAGE'] }));
    const live = await open('', { apikey: ADMIN });
    let producing = true;
    const producer = (async () => {
      for (let i = 0; producing; i++) {
        await messages(store, 'a1', 5, `b${i}-`);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await eventually(() => live.frames.length >= 300, 10_000, '300 live frames');
    const resumeAfter = live.frames[50]!;
    const resumed = await open(`?from=${encodeURIComponent(resumeAfter.position)}`, {
      apikey: 'token-alpha',
    });
    await eventually(() => resumed.frames.length >= 400, 10_000, 'resumed client catches up');
    producing = false;
    await producer;
    const expected = store.events.filter((e) => e.type === 'MessageReceived').map((e) => e.id);
    await eventually(
      () => live.frames.length >= expected.length && resumed.frames.length >= expected.length - 51,
      5_000,
      'both have everything',
    );
    expect(live.frames.map((f) => f.id)).toEqual(expected);
    expect(resumed.frames.map((f) => f.id)).toEqual(expected.slice(51));
    live.ws.close();
    resumed.ws.close();
  });

  it('closes a consumer that does not keep up with 4008; resuming with ?from= recovers everything', async () => {
    await boot(64 * 1024);
    await createInstance(store, 'a1', 'alpha', settings({ websocketEnable: true, events: ['MESSAGE'] }));
    const slow = await open('', { apikey: ADMIN });
    slow.ws.pause(); // stops reading: the server's unsent bytes grow
    const big = 'x'.repeat(4096);
    // Until the kernel's socket buffers are full and the server's unsent bytes pass the bound.
    for (let i = 0; i < 400 && !/slow_consumers_closed_total 1/.test(await sinks.metrics.render()); i++) {
      await messages(store, 'a1', 50, `s${i}-`, big);
      await new Promise((r) => setTimeout(r, 5));
    }
    await eventually(
      async () => /slow_consumers_closed_total 1/.test(await sinks.metrics.render()),
      5_000,
      'closed as slow',
    );
    expect(sinks.websocketHub.clientCount).toBe(0);
    slow.ws.resume();
    const { code, reason } = await slow.closed;
    expect(code).toBe(WS_CLOSE.SLOW_CONSUMER);
    expect(reason).toMatch(/slow consumer/);
    const expected = store.events.filter((e) => e.type === 'MessageReceived').map((e) => e.id);
    expect(slow.frames.length).toBeGreaterThan(0);
    expect(slow.frames.length).toBeLessThan(expected.length);

    const last = slow.frames.at(-1)!.position;
    const again = await open(`?from=${encodeURIComponent(last)}`, { apikey: ADMIN });
    await eventually(() => slow.frames.length + again.frames.length >= expected.length, 10_000, 'the rest');
    expect([...slow.frames, ...again.frames].map((f) => f.id)).toEqual(expected);
    again.ws.close();
  });

  it('caps sockets and replays per API key with a 429 that says what to do; an instance replay reads only its own streams', async () => {
    await boot(undefined, { maxConnectionsPerKey: 3, maxReplaysPerKey: 1 });
    await createInstance(store, 'a1', 'alpha', settings({ websocketEnable: true, events: ['MESSAGE'] }));
    await createInstance(store, 'b1', 'beta', settings({ websocketEnable: true, events: ['MESSAGE'] }));
    await messages(store, 'a1', 5, 'a');
    await messages(store, 'b1', 300, 'b');
    await messages(store, 'a1', 5, 'a2-');

    // Every read of the log with what it returned; replays of a1 wait at `gate` while it is set.
    const reads: Array<{ streams: readonly string[] | undefined; streamsRead: Set<string> }> = [];
    let gate: Promise<void> | undefined;
    let open_: () => void = () => undefined;
    const readAll = store.readAll.bind(store);
    store.readAll = async (options = {}) => {
      if (gate && options.filter?.streams?.includes('wa-a1')) await gate;
      const page = await readAll(options);
      reads.push({
        streams: options.filter?.streams,
        streamsRead: new Set(page.events.map((e) => e.stream)),
      });
      return page;
    };

    // Replays: one at a time per key; another key is not affected.
    gate = new Promise<void>((resolve) => (open_ = resolve));
    const first = await open('?from=start', { apikey: 'token-alpha' });
    const second = await refused('?from=start', { apikey: 'token-alpha' });
    expect(second.status).toBe(429);
    expect(second.body.error?.code).toBe('ZW_ERR_RATE_LIMITED');
    expect(second.body.error?.message).toMatch(
      /at most 1 at once, WS_MAX_REPLAYS_PER_KEY\): let one reach the live tail/,
    );
    const beta = await open('?from=start', { apikey: 'token-beta' });
    open_();
    gate = undefined;
    await eventually(() => first.frames.length === 10 && beta.frames.length === 300, 5_000, 'both replays');
    expect(first.frames.every((f) => f.instance.id === 'a1')).toBe(true);
    // The replay slot is back once the replay reached the live tail.
    const third = await open('?from=start', { apikey: 'token-alpha' });
    await eventually(() => third.frames.length === 10, 5_000, 'third replay');

    // Each token's replays asked the store for its instance's two streams only, and got nothing else.
    const scoped = reads.filter((r) => r.streams !== undefined);
    expect(scoped.map((r) => [...(r.streams ?? [])].sort().join())).toContain('instance-a1,wa-a1');
    expect(scoped.map((r) => [...(r.streams ?? [])].sort().join())).toContain('instance-b1,wa-b1');
    for (const read of scoped) {
      for (const stream of read.streamsRead) expect(read.streams).toContain(stream);
    }

    // Sockets: alpha holds 2 (first, third); a third live one is fine, a fourth is refused.
    const live = await open('', { apikey: 'token-alpha' });
    const over = await refused('', { apikey: 'token-alpha' });
    expect(over.status).toBe(429);
    expect(over.body.error?.message).toMatch(
      /already holds 3 WebSocket connections \(at most 3 at once, WS_MAX_CONNECTIONS_PER_KEY\): close one/,
    );
    expect((await open('', { apikey: ADMIN })).ws.readyState).toBe(WebSocket.OPEN);
    live.ws.close();
    await eventually(
      async () => {
        try {
          (await open('', { apikey: 'token-alpha' })).ws.close();
          return true;
        } catch {
          return false;
        }
      },
      5_000,
      'a freed connection slot',
    );
    for (const c of [first, third, beta]) c.ws.close();

    // A socket that raced past the route's check is refused by the hub itself, with 4029 and the reason.
    const closes: Array<[number | undefined, string | undefined]> = [];
    const fake = () => ({
      readyState: WebSocket.OPEN,
      bufferedAmount: 0,
      send: () => undefined,
      close: (code?: number, reason?: string) => closes.push([code, reason]),
      on: () => undefined,
    });
    for (let i = 0; i < 4; i++) {
      await sinks.websocketHub.attach(fake(), { principal: { role: 'instance', instanceId: 'c1' } });
    }
    expect(closes).toEqual([
      [
        WS_CLOSE.TOO_MANY,
        'too many for this key (at most 3 at once, WS_MAX_CONNECTIONS_PER_KEY): close one and connect again',
      ],
    ]);
  });

  it('serves /metrics to the admin key only, and rotates webhook secrets', async () => {
    await boot();
    const metrics = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/text\/plain/);
    expect(metrics.body).toContain('zapwire_sink_delivered_total');
    expect(metrics.body).toContain('zapwire_process_cpu_user_seconds_total');
    sinks.metrics.registerGauge({
      name: 'zapwire_instances',
      help: 'instances per state',
      labelNames: ['state'],
      collect: () => [
        { labels: { state: 'open' }, value: 3 },
        { labels: { state: 'qr' }, value: 1 },
      ],
    });
    const withGauge = await app.inject({ url: '/metrics', headers: { apikey: ADMIN } });
    expect(withGauge.body).toContain('zapwire_instances{state="open"} 3');
    expect(withGauge.body).toContain('zapwire_instances{state="qr"} 1');
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/metrics', headers: { apikey: 'token-alpha' } })).statusCode).toBe(403);

    const rotate = await app.inject({
      method: 'POST',
      url: '/instance/alpha/webhook/secret/rotate',
      headers: { apikey: 'token-alpha' },
    });
    expect(rotate.statusCode).toBe(200);
    expect(rotate.json()).toEqual({ webhookSecret: 'new-secret-a1' });
    expect(rotated).toEqual(['a1']);
    const other = await app.inject({
      method: 'POST',
      url: '/instance/beta/webhook/secret/rotate',
      headers: { apikey: 'token-alpha' },
    });
    expect(other.statusCode).toBe(403);
    const missing = await app.inject({
      method: 'POST',
      url: '/instance/nobody/webhook/secret/rotate',
      headers: { apikey: ADMIN },
    });
    expect(missing.statusCode).toBe(404);
  });

  it('shows the webhook queue, lists dead letters and redelivers one through HTTP', async () => {
    await boot(undefined, undefined, { redeliverPerMinute: 2 });
    const receiver = await WebhookReceiver.start();
    try {
      const sinkSettings = settings({ webhookUrl: receiver.url('/hook'), events: ['MESSAGE'] });
      directory.set({ id: 'a1', name: 'alpha', sinks: sinkSettings, webhookSecret: 'sa' });
      await createInstance(store, 'a1', 'alpha', sinkSettings);
      receiver.respond({ status: 410, body: 'gone' }); // refused: dead at once
      const [event, second] = await messages(store, 'a1', 2, 'http');
      const list = async (query = '', key = 'token-alpha') =>
        app.inject({ url: `/instance/alpha/webhook/dead-letters${query}`, headers: { apikey: key } });
      await eventually(async () => (await list()).json().deadLetters.length === 2, 5_000, 'dead');
      const [, dead] = (await list()).json().deadLetters as Array<Record<string, unknown>>;
      expect(dead).toMatchObject({
        eventId: event!.id,
        eventName: 'MESSAGE',
        reason: 'refused',
        statusCode: 410,
        target: 'instance',
        url: receiver.url('/hook'),
      });
      // The instance sees the status; the receiver's answer body stays with the admin.
      expect(String(dead!['error'])).toBe('refused by the receiver: HTTP 410');
      const [, asAdmin] = (await list('', ADMIN)).json().deadLetters as Array<Record<string, unknown>>;
      expect(String(asAdmin!['error'])).toContain('HTTP 410: gone');
      expect((await list('', 'token-beta')).statusCode).toBe(403);
      expect((await list('?limit=0')).statusCode).toBe(400);
      // The compatibility view of earlier versions' delivery log.
      const compat = await app.inject({
        url: '/instance/alpha/webhook/deliveries?status=dead',
        headers: { apikey: 'token-alpha' },
      });
      expect(
        compat.json().deliveries.map((d: { eventId: string; status: string }) => [d.eventId, d.status]),
      ).toEqual([
        [second!.id, 'dead'],
        [event!.id, 'dead'],
      ]);
      // The queue's state says why.
      const status = await app.inject({ url: '/instance/alpha/webhook', headers: { apikey: 'token-alpha' } });
      expect(status.json()).toMatchObject({
        queues: [{ target: 'instance', state: 'refusing', lastStatusCode: 410, lastError: 'HTTP 410' }],
        deadLetters: 2,
      });

      receiver.respond({ status: 204 });
      const redeliver = (id: string, key = 'token-alpha') =>
        app.inject({
          method: 'POST',
          url: `/instance/a1/webhook/dead-letters/${id}/redeliver`,
          headers: { apikey: key },
        });
      expect((await redeliver('999999')).statusCode).toBe(404);
      expect((await redeliver(String(dead!['id']), 'token-beta')).statusCode).toBe(403);
      const again = await redeliver(String(dead!['id']));
      expect(again.statusCode).toBe(202);
      expect(again.json().replay).toMatchObject({ state: 'running', eventId: event!.id });
      await receiver.waitUntil(() => receiver.accepted().length === 1, 5_000, 'redelivered');
      expect(receiver.accepted()[0]!.headers['x-zapwire-event-id']).toBe(event!.id);
      const page = (await list('?limit=1')).json() as {
        deadLetters: Array<{ id: string }>;
        next: string | null;
      };
      expect(page.deadLetters).toHaveLength(1);
      expect(page.next).toBe(page.deadLetters[0]!.id);
      expect((await list(`?limit=1&before=${page.next}`)).json().deadLetters).toEqual([]);
      // A replay of a range, by position.
      const replay = await app.inject({
        method: 'POST',
        url: '/instance/a1/webhook/replay',
        headers: { apikey: 'token-alpha' },
        payload: { from: 'start' },
      });
      expect(replay.statusCode).toBe(202);
      await receiver.waitUntil(() => receiver.accepted().length === 3, 5_000, 'replayed');
      const bad = await app.inject({
        method: 'POST',
        url: '/instance/a1/webhook/replay',
        headers: { apikey: 'token-alpha' },
        payload: { from: 'last tuesday' },
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.message).toMatch(/ISO 8601/);
      // Beyond WEBHOOK_REDELIVER_PER_MINUTE, the instance is told when to come back.
      const limited = await redeliver(page.deadLetters[0]!.id);
      expect(limited.statusCode).toBe(429);
      expect(limited.json().error.code).toBe('ZW_ERR_RATE_LIMITED');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await receiver.close();
    }
  });
});
