/**
 * Sink benchmark (`npm run bench -- sinks`): events/s and append→delivery latency (p50/p99) per sink at
 * 100 and 1,000 offered events/s, each beside a bare baseline measured in the same run:
 *
 *   webhook   vs a plain HTTP POST loop (keep-alive, one request at a time)
 *   rabbitmq  vs bare amqplib publish on a confirm channel
 *   nats      vs bare core NATS publish
 *   websocket vs a bare `ws` server sending each frame
 *
 * The store is PostgreSQL: a fresh database per run on BENCH_PG_URL (default the local server), or with
 * BENCH_STORE=embedded the embedded PostgreSQL that zapwire starts by default. The webhook delivery log lives in the same database, as in
 * production. Appends are issued at the offered rate without waiting for each other (as many instances
 * would), and everything runs in this one process (load, sinks, receivers), so both columns pay the same
 * event-loop sharing. Env: AMQP_URL, NATS_URL (defaults: the local services), BENCH_SECONDS (default 3).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { startBenchEmbeddedPostgres } from '../support/embedded-postgres.ts';
import amqp from 'amqplib';
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import { connect, headers as natsHeaders } from 'nats';
import pg from 'pg';
import pino from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { installAuth } from '../../src/http/auth.ts';
import { wsRoutes } from '../../src/http/routes/ws.ts';
import { DEFAULT_ADVANCED_SETTINGS, type SinkSettings } from '../../src/domain/events.ts';
import { SINK_MIGRATIONS_DIR, startSinks, type Sinks } from '../../src/sinks/index.ts';
import { createSqlEventStore, migrate, openPostgres, STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import type { EventStore } from '../../src/store/port.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';
import { WebhookReceiver } from '../../test/support/webhook-receiver.ts';

const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const RATES = (process.env['BENCH_RATES']?.split(',').map(Number) ?? [100, 1000]) as readonly number[];
/** Events are spread round-robin over this many instances (streams), as a gateway's traffic would be. */
const INSTANCES = 16;
const now = (): number => performance.timeOrigin + performance.now();

interface Result {
  readonly offered: number;
  readonly delivered: number;
  readonly eventsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Offers `rate` events/s for SECONDS. Offers run concurrently, at most one per instance in flight (the
 * runtime appends through one mailbox per instance); `sequential` awaits each one first (the bare
 * baselines that are loops by definition). An offer that cannot start on time starts late: the latency
 * counts from when it was due, so a saturated store shows up in the numbers instead of hiding in the driver.
 */
async function drive(
  rate: number,
  offer: (id: string, sentAt: number) => Promise<void>,
  receivedAt: Map<string, number>,
  sequential = false,
): Promise<Result> {
  const total = Math.round(rate * SECONDS);
  const sentAt = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  const start = now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const id = randomUUID();
    const t = Math.min(now(), due);
    sentAt.set(id, t);
    if (sequential) {
      await offer(id, t);
      continue;
    }
    const p: Promise<void> = offer(id, t).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= INSTANCES) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const deadline = now() + 20_000;
  while (receivedAt.size < total && now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const latencies: number[] = [];
  let last = start;
  for (const [id, t0] of sentAt) {
    const t1 = receivedAt.get(id);
    if (t1 === undefined) continue;
    latencies.push(t1 - t0);
    last = Math.max(last, t1);
  }
  latencies.sort((a, b) => a - b);
  return {
    offered: total,
    delivered: latencies.length,
    eventsPerSecond: latencies.length / ((last - start) / 1000),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

interface Harness {
  readonly store: EventStore;
  readonly db: SqlDatabase;
  close(): Promise<void>;
}

const PG_URL = process.env['BENCH_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const USE_EMBEDDED = process.env['BENCH_STORE'] === 'embedded';

async function openHarness(): Promise<Harness> {
  let dropDatabase: (() => Promise<void>) | undefined;
  let db: SqlDatabase;
  if (USE_EMBEDDED) {
    const embedded = await startBenchEmbeddedPostgres();
    db = await openPostgres({ url: embedded.url, max: 20 });
    dropDatabase = () => embedded.close();
  } else {
    const name = `zw_bench_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    db = await openPostgres({ url: PG_URL.replace(/\/[^/]*$/, `/${name}`), max: 20 });
    dropDatabase = async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    };
  }
  await migrate(db, [STORE_MIGRATIONS_DIR, SINK_MIGRATIONS_DIR]);
  const store = createSqlEventStore(db);
  return {
    store,
    db,
    async close() {
      await store.close();
      await db.close().catch(() => undefined);
      await dropDatabase?.();
    },
  };
}

const settings = (patch: Partial<SinkSettings>): SinkSettings => ({
  webhookUrl: null,
  events: ['MESSAGE'],
  rabbitmqEnable: false,
  websocketEnable: false,
  natsEnable: false,
  ...patch,
});

function messageEvent(id: string): { id: string; type: string; data: Record<string, unknown> } {
  const at = new Date().toISOString();
  return {
    id,
    type: 'MessageReceived',
    data: {
      at,
      messageId: id.slice(0, 20),
      chatJid: '5511999990000@s.whatsapp.net',
      senderJid: '5511999990000@s.whatsapp.net',
      fromMe: false,
      pushName: 'Bench',
      messageType: 'conversation',
      text: 'benchmark message of an ordinary length, about a hundred characters long, give or take.',
      timestamp: at,
      isGroup: false,
    },
  };
}

/** A representative body for the baselines: an envelope of the same size the sinks send. */
function sampleBody(id: string): string {
  const e = messageEvent(id);
  return JSON.stringify({
    id,
    event: 'MESSAGE',
    instance: { id: 'bench-instance', name: 'bench' },
    timestamp: new Date().toISOString(),
    position: '0000000000000123:0000000000004567',
    data: e.data,
  });
}

type SinkName = 'webhook' | 'rabbitmq' | 'nats' | 'websocket';

/** The floor under every sink: append → a bare store subscription's handler, no sink work at all. */
async function runStoreFloor(rate: number): Promise<Result> {
  const harness = await openHarness();
  const receivedAt = new Map<string, number>();
  const subscription = harness.store.subscribe(
    'bench-floor',
    { startAt: 'end', batchSize: 256, pollIntervalMs: 1_000, filter: { streamPrefixes: ['wa-'] } },
    async (events) => {
      const t = now();
      for (const e of events) receivedAt.set(e.id, t);
    },
  );
  try {
    await subscription.caughtUp;
    let n = 0;
    return await drive(
      rate,
      async (id) => void (await harness.store.append(`wa-floor-${n++ % INSTANCES}`, [messageEvent(id)])),
      receivedAt,
    );
  } finally {
    await subscription.stop();
    await harness.close();
  }
}

async function runSink(sink: SinkName, rate: number): Promise<Result> {
  const harness = await openHarness();
  const { store, db } = harness;
  const receivedAt = new Map<string, number>();
  const record = (body: string): void => {
    const id = (JSON.parse(body) as { id: string }).id;
    if (!receivedAt.has(id)) receivedAt.set(id, now());
  };
  const cleanups: Array<() => Promise<unknown>> = [];
  let sinks: Sinks | undefined;
  try {
    const run = randomUUID().slice(0, 8);
    const instances = Array.from({ length: INSTANCES }, (_, i) => ({
      id: `bench-${run}-${i}`,
      name: `bench${run}${i}`,
    }));
    const exchange = `zapwire.bench.${randomUUID()}`;
    const prefix = `zb${randomUUID().slice(0, 8)}`;
    let sinkSettings: SinkSettings;
    if (sink === 'webhook') {
      const receiver = await WebhookReceiver.start();
      receiver.onRequest = (r) => record(r.rawBody);
      cleanups.push(() => receiver.close());
      sinkSettings = settings({ webhookUrl: receiver.url('/bench') });
    } else if (sink === 'rabbitmq') {
      const connection = await amqp.connect(AMQP_URL);
      const channel = await connection.createChannel();
      await channel.assertExchange(exchange, 'topic', { durable: true });
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
      await channel.bindQueue(queue, exchange, '#');
      await channel.consume(queue, (m) => m && record(m.content.toString()), { noAck: true });
      cleanups.push(async () => {
        await channel.deleteExchange(exchange).catch(() => undefined);
        await connection.close();
      });
      sinkSettings = settings({ rabbitmqEnable: true });
    } else if (sink === 'nats') {
      const nc = await connect({ servers: NATS_URL });
      nc.subscribe(`${prefix}.>`, { callback: (_e, m) => record(new TextDecoder().decode(m.data)) });
      await nc.flush();
      cleanups.push(() => nc.close());
      sinkSettings = settings({ natsEnable: true });
    } else {
      sinkSettings = settings({ websocketEnable: true });
    }
    sinks = await startSinks({
      store,
      db,
      logger: pino({ level: 'error' }),
      directory: {
        get: async (id) => {
          const instance = instances.find((i) => i.id === id);
          return instance ? { ...instance, sinks: sinkSettings, webhookSecret: 'bench-secret' } : undefined;
        },
      },
      config: {
        processMetrics: false,
        ...(sink === 'rabbitmq' ? { amqpUrl: AMQP_URL, amqpExchange: exchange } : {}),
        ...(sink === 'nats' ? { natsUrl: NATS_URL, natsSubjectPrefix: prefix } : {}),
      },
    });
    if (sink === 'websocket') {
      const app = Fastify();
      await app.register(websocket);
      installAuth(app, {
        authenticate: async () => ({ principal: { role: 'admin' } }),
        findInstance: async () => undefined,
      });
      await app.register(wsRoutes, { sinks });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const ws = new WebSocket(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws`, {
        headers: { apikey: 'bench' },
      });
      ws.on('message', (data) => record(String(data)));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      cleanups.push(async () => {
        ws.terminate();
        await app.close();
      });
    }
    for (const instance of instances) {
      await store.append(`instance-${instance.id}`, [
        {
          type: 'InstanceCreated',
          data: {
            at: new Date().toISOString(),
            instanceId: instance.id,
            name: instance.name,
            createdBy: 'admin',
            advancedSettings: DEFAULT_ADVANCED_SETTINGS,
            sinks: sinkSettings,
            proxy: null,
          },
        },
      ]);
    }
    let n = 0;
    const result = await drive(
      rate,
      async (id) => void (await store.append(`wa-${instances[n++ % INSTANCES]!.id}`, [messageEvent(id)])),
      receivedAt,
    );
    if (sink === 'webhook') {
      // Queues that left the reader's pace get a row (a position, not copies of events).
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM zw_webhook_queues');
      console.log(`  webhook @ ${rate}/s: ${rows[0]?.n ?? 0} queue rows for ${result.offered} events`);
    }
    return result;
  } finally {
    await sinks?.stop();
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await harness.close();
  }
}

async function runBaseline(sink: SinkName, rate: number): Promise<Result> {
  const receivedAt = new Map<string, number>();
  const record = (body: string): void => {
    const id = (JSON.parse(body) as { id: string }).id;
    if (!receivedAt.has(id)) receivedAt.set(id, now());
  };
  if (sink === 'webhook') {
    const receiver = await WebhookReceiver.start();
    receiver.onRequest = (r) => record(r.rawBody);
    const agent = new http.Agent({ keepAlive: true });
    try {
      return await drive(
        rate,
        (id) =>
          new Promise<void>((resolve, reject) => {
            const body = sampleBody(id);
            const req = http.request(
              receiver.url('/bare'),
              {
                method: 'POST',
                agent,
                headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
              },
              (res) => res.resume().on('end', () => resolve()),
            );
            req.on('error', reject);
            req.end(body);
          }),
        receivedAt,
        true,
      );
    } finally {
      agent.destroy();
      await receiver.close();
    }
  }
  if (sink === 'rabbitmq') {
    const exchange = `zapwire.bench.bare.${randomUUID()}`;
    const connection = await amqp.connect(AMQP_URL);
    const consumer = await connection.createChannel();
    const publisher = await connection.createConfirmChannel();
    await consumer.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await consumer.assertQueue('', { exclusive: true, autoDelete: true });
    await consumer.bindQueue(queue, exchange, '#');
    await consumer.consume(queue, (m) => m && record(m.content.toString()), { noAck: true });
    try {
      return await drive(
        rate,
        async (id) => {
          publisher.publish(exchange, 'bench.MESSAGE', Buffer.from(sampleBody(id)), {
            persistent: true,
            messageId: id,
          });
          await publisher.waitForConfirms();
        },
        receivedAt,
        true,
      );
    } finally {
      await consumer.deleteExchange(exchange).catch(() => undefined);
      await connection.close();
    }
  }
  if (sink === 'nats') {
    const subject = `zbbare${randomUUID().slice(0, 8)}`;
    const nc = await connect({ servers: NATS_URL });
    nc.subscribe(`${subject}.>`, { callback: (_e, m) => record(new TextDecoder().decode(m.data)) });
    await nc.flush();
    const encoder = new TextEncoder();
    try {
      return await drive(
        rate,
        async (id) => {
          const h = natsHeaders();
          h.set('Nats-Msg-Id', id);
          nc.publish(`${subject}.bench.MESSAGE`, encoder.encode(sampleBody(id)), { headers: h });
        },
        receivedAt,
      );
    } finally {
      await nc.close();
    }
  }
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => server.once('listening', resolve));
  const connected = new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  client.on('message', (data) => record(String(data)));
  const socket = await connected;
  try {
    return await drive(rate, async (id) => socket.send(sampleBody(id)), receivedAt);
  } finally {
    client.terminate();
    await new Promise((resolve) => server.close(resolve));
  }
}

const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : '-');

export default async function benchSinks(): Promise<void> {
  const store = USE_EMBEDDED ? 'embedded postgres' : 'postgres (fresh database)';
  console.log(
    `\nSinks: append → delivery, ${SECONDS} s per run, store ${store}, ${INSTANCES} instances, 1 event per append\n`,
  );
  const rows: string[][] = [];
  const only = process.env['BENCH_SINKS']?.split(',');
  const floors = new Map<number, Result>();
  for (const rate of only ? [] : RATES) {
    const floor = await runStoreFloor(rate);
    floors.set(rate, floor);
    rows.push([
      '(store only)',
      String(rate),
      `${floor.delivered}/${floor.offered}`,
      fmt(floor.eventsPerSecond, 0),
      fmt(floor.p50),
      fmt(floor.p99),
      '',
      '',
      '',
      '',
      '',
    ]);
  }
  for (const sink of ['webhook', 'rabbitmq', 'nats', 'websocket'] as const) {
    if (only && !only.includes(sink)) continue;
    for (const rate of RATES) {
      const measured = await runSink(sink, rate);
      const bare = await runBaseline(sink, rate);
      rows.push([
        sink,
        String(rate),
        `${measured.delivered}/${measured.offered}`,
        fmt(measured.eventsPerSecond, 0),
        fmt(measured.p50),
        fmt(measured.p99),
        fmt(bare.eventsPerSecond, 0),
        fmt(bare.p50),
        fmt(bare.p99),
        // The target: each sink at ≥ 0.8× the bare store floor (append → a bare subscription).
        floors.has(rate) ? `${fmt(measured.eventsPerSecond / floors.get(rate)!.eventsPerSecond, 2)}×` : '',
        floors.has(rate)
          ? `${measured.p99 - floors.get(rate)!.p99 >= 0 ? '+' : ''}${fmt(measured.p99 - floors.get(rate)!.p99)}`
          : '',
      ]);
      console.log(`  ${sink} @ ${rate}/s done`);
    }
  }
  const header = [
    'sink',
    'offered/s',
    'delivered',
    'events/s',
    'p50 ms',
    'p99 ms',
    'bare ev/s',
    'bare p50',
    'bare p99',
    'ev/s × floor',
    'Δp99 to floor',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  console.log('');
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
  console.log(
    '\n(store only) = append → a bare subscription handler on the same store: the floor under every sink.' +
      '\nbare: webhook = sequential keep-alive POST loop; rabbitmq = amqplib confirm-channel publish awaited per message;' +
      '\n      nats = core publish; websocket = ws server send. Latency = offer (append call) → receipt.' +
      '\n× floor / Δp99 to floor: the sink against (store only) at the same offered rate in this run.',
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchSinks().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
