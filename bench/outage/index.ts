/**
 * Outage bench (`npm run bench -- outage`): a webhook receiver that is down while a large backlog builds,
 * then heals. The system under test is `node dist/src/main.js` (what `npm start` runs), configured by
 * environment as a user would, with BENCH_OUTAGE_INSTANCES instances (100) created over HTTP, each with its
 * webhook on this process's receiver.
 *
 * Events reach the log the way the runtime writes inbound messages (MessageReceived on `wa-<id>`), appended
 * by this process straight into the server's database: building a 1,000,000-event backlog through Baileys
 * would take the machine most of an hour, and what is measured here is the path from the log to the
 * receiver, which is the same either way. Phases:
 *
 *   healthy   BENCH_OUTAGE_HEALTHY events (100,000) with the receiver up: the webhook's saturation rate
 *   outage    the receiver answers 503; BENCH_OUTAGE_EVENTS events (1,000,000) are appended, then it stays
 *             down BENCH_OUTAGE_HOLD_S seconds (30) more
 *   drain     the receiver answers 200 again: time until the first delivery, the drain rate, and whether
 *             every event arrived once, in order per instance
 *
 * Memory is the RSS of the server's whole process tree (the embedded PostgreSQL included) and of its node
 * process alone, sampled every second. Rows: what the outage wrote to the webhook's tables (pg_stat).
 * BENCH_STORE: `embedded` (the default configuration) or `postgres` (a fresh database on
 * BENCH_DATABASE_URL's server). BENCH_OUTAGE_ROOT runs another checkout's build instead of this one's
 * (a before/after comparison); WEBHOOK_* variables pass through to the server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { processTree } from '../e2e/cpu.ts';
import { freePort, serverEnv } from '../support/server-env.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const ROOT = resolve(env['BENCH_OUTAGE_ROOT'] ?? join(here, '..', '..'));
const INSTANCES = Number(env['BENCH_OUTAGE_INSTANCES'] ?? 100);
const HEALTHY = Number(env['BENCH_OUTAGE_HEALTHY'] ?? 100_000);
const BACKLOG = Number(env['BENCH_OUTAGE_EVENTS'] ?? 1_000_000);
const HOLD_S = Number(env['BENCH_OUTAGE_HOLD_S'] ?? 30);
const STORE = (env['BENCH_STORE'] ?? 'embedded') as 'embedded' | 'postgres';
const SERVER_URL = env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ADMIN_KEY = 'bench-outage-admin-key-0123456789';
/**
 * Events per append (one transaction, one instance) in the healthy phase and in the outage; appends go
 * round the instances and run this many at once, so the log interleaves the instances as live traffic does,
 * faster than the webhook can deliver (so the healthy phase measures the webhook, not the appends).
 */
const HEALTHY_BATCH = 50;
const OUTAGE_BATCH = 500;
const APPEND_CONCURRENCY = 8;

// ---------------------------------------------------------------------------------------- receiver

/** Counts each instance's events by sequence number: arrivals, repeats, and arrivals out of order. */
class Receiver {
  up = true;
  private server!: http.Server;
  url = '';
  received = 0;
  repeats = 0;
  outOfOrder = 0;
  refusedWhileDown = 0;
  firstAt: number | undefined;
  lastAt = 0;
  private readonly seen: Uint8Array[] = [];
  private readonly highest: Int32Array;

  constructor(instances: number, perInstance: number) {
    for (let i = 0; i < instances; i++) this.seen.push(new Uint8Array(perInstance));
    this.highest = new Int32Array(instances).fill(-1);
  }

  /** Starts counting afresh (per phase); what arrived before is kept for repeats. */
  mark(): void {
    this.received = 0;
    this.firstAt = undefined;
    this.lastAt = 0;
  }

  async start(): Promise<void> {
    this.server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        if (!this.up) {
          this.refusedWhileDown += 1;
          response.writeHead(503).end('down for the bench');
          return;
        }
        const now = performance.now();
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          for (const item of Array.isArray(body) ? body : [body]) this.count(item, now);
        } catch {
          // not a bench event
        }
        response.writeHead(200).end();
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  private count(item: unknown, now: number): void {
    const text = (item as { data?: { text?: unknown } }).data?.text;
    const match = typeof text === 'string' ? /^o:(\d+):(\d+)$/.exec(text) : null;
    if (!match) return;
    const instance = Number(match[1]);
    const seq = Number(match[2]);
    const seen = this.seen[instance];
    if (!seen) return;
    if (seen[seq]) {
      this.repeats += 1;
      return;
    }
    seen[seq] = 1;
    if (seq < this.highest[instance]!) this.outOfOrder += 1;
    else this.highest[instance] = seq;
    this.received += 1;
    this.firstAt ??= now;
    this.lastAt = now;
  }

  missing(instances: number, upTo: number): number {
    let missing = 0;
    for (let i = 0; i < instances; i++) for (let s = 0; s < upTo; s++) if (!this.seen[i]![s]) missing += 1;
    return missing;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

// ---------------------------------------------------------------------------------------- server

interface Server {
  readonly child: ChildProcess;
  readonly base: string;
  readonly dataDir: string;
  readonly databaseUrl: string;
  stop(): Promise<void>;
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The embedded server's URL, from its data directory (the password file and the socket directory). */
async function embeddedUrl(dataDir: string): Promise<string> {
  const { startEmbeddedPostgres } = await import(join(ROOT, 'src/store/embedded-postgres/server.ts'));
  const attached = (await (startEmbeddedPostgres as (o: object) => Promise<{ url: string }>)({
    directory: join(dataDir, 'postgres'),
    attach: true,
  })) as { url: string };
  return attached.url;
}

async function startServer(): Promise<Server> {
  const build = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--if-stale'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  if (build.status !== 0) throw new Error('build failed');
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-outage-'));
  const name = `zw_outage_${randomBytes(4).toString('hex')}`;
  let databaseUrl = '';
  if (STORE === 'postgres') {
    await admin(`CREATE DATABASE ${name}`);
    const url = new URL(SERVER_URL);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  }
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/src/main.js'], {
    cwd: ROOT,
    env: serverEnv({
      port,
      dataDir,
      adminKey: ADMIN_KEY,
      ...(databaseUrl ? { databaseUrl } : {}),
      passWebhook: true,
      // e.g. --max-old-space-size=64: whether what the heap grows by is garbage or held
      ...(env['BENCH_NODE_OPTIONS'] ? { extra: { NODE_OPTIONS: env['BENCH_NODE_OPTIONS'] } } : {}),
    }),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  await until('the server up', async () => {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    return (
      (await fetch(`${base}/health`)
        .then((r) => r.ok)
        .catch(() => false)) || undefined
    );
  });
  if (!databaseUrl) databaseUrl = await embeddedUrl(dataDir);
  return {
    child,
    base,
    dataDir,
    databaseUrl,
    async stop() {
      child.kill('SIGTERM');
      await new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        const timer = setTimeout(() => (child.kill('SIGKILL'), r()), 15_000);
        child.once('exit', () => (clearTimeout(timer), r()));
      });
      if (STORE === 'postgres')
        await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      removeEmbeddedPostgres(join(dataDir, 'postgres'));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------- load

function rssKbOf(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * RSS samples (MB) of the server's tree and of its node process, and the V8 heap in use (from /metrics),
 * every second while running.
 */
class Memory {
  tree: number[] = [];
  node: number[] = [];
  heap: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly pid: number,
    private readonly base: string,
  ) {}
  async heapUsed(): Promise<number> {
    const text = await fetch(`${this.base}/metrics`, { headers: { apikey: ADMIN_KEY } })
      .then((r) => r.text())
      .catch(() => '');
    const bytes = Number(/^zapwire_nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? NaN);
    return Math.round(bytes / 1024 / 1024);
  }
  sample(): { tree: number; node: number } {
    const tree = Math.round(processTree(this.pid).reduce((s, p) => s + rssKbOf(p), 0) / 1024);
    const node = Math.round(rssKbOf(this.pid) / 1024);
    return { tree, node };
  }
  start(): void {
    this.tree = [];
    this.node = [];
    this.heap = [];
    this.timer = setInterval(() => {
      const { tree, node } = this.sample();
      this.tree.push(tree);
      this.node.push(node);
      void this.heapUsed().then((heap) => this.heap.push(heap));
    }, 1_000);
  }
  stop(): { treePeak: number; nodePeak: number; heapPeak: number } {
    clearInterval(this.timer);
    return {
      treePeak: Math.max(0, ...this.tree),
      nodePeak: Math.max(0, ...this.node),
      heapPeak: Math.max(0, ...this.heap.filter((h) => !Number.isNaN(h))),
    };
  }
}

const messageEvent = (instance: number, seq: number) => ({
  id: randomUUID(),
  type: 'MessageReceived',
  data: {
    at: new Date().toISOString(),
    messageId: `O${instance}X${seq}`,
    chatJid: '5511999990000@s.whatsapp.net',
    senderJid: '5511999990000@s.whatsapp.net',
    fromMe: false,
    pushName: 'Cliente',
    messageType: 'conversation',
    text: `o:${instance}:${seq}`,
    timestamp: new Date().toISOString(),
    isGroup: false,
  },
  metadata: {},
});

/** Appends `perInstance` events to each instance's `wa-` stream, sequence numbers from `from`. */
async function appendEvents(
  pool: pg.Pool,
  ids: readonly string[],
  from: number,
  perInstance: number,
  batch: number,
): Promise<void> {
  const jobs: Array<{ instance: number; start: number; count: number }> = [];
  for (let start = from; start < from + perInstance; start += batch) {
    for (let instance = 0; instance < ids.length; instance++) {
      jobs.push({ instance, start, count: Math.min(batch, from + perInstance - start) });
    }
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: APPEND_CONCURRENCY }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        const events = Array.from({ length: job.count }, (_, i) => messageEvent(job.instance, job.start + i));
        await pool.query('SELECT * FROM es_append($1, $2, NULL, $3::jsonb, true)', [
          `wa-${ids[job.instance]}`,
          'wa',
          JSON.stringify(events),
        ]);
      }
    }),
  );
}

async function tableWrites(pool: pg.Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ relname: string; writes: string }>(
    `SELECT relname, (n_tup_ins + n_tup_upd + n_tup_del)::text AS writes FROM pg_stat_user_tables
      WHERE relname IN ('zw_webhook_queues', 'zw_webhook_deliveries', 'es_dead_letters')`,
  );
  return Object.fromEntries(rows.map((r) => [r.relname, Number(r.writes)]));
}

function table(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export default async function main(): Promise<void> {
  const perInstance = Math.ceil(BACKLOG / INSTANCES);
  const healthyPer = Math.ceil(HEALTHY / INSTANCES);
  const receiver = new Receiver(INSTANCES, healthyPer + perInstance);
  await receiver.start();
  const server = await startServer();
  const pool = new pg.Pool({ connectionString: server.databaseUrl, max: APPEND_CONCURRENCY + 1 });
  const memory = new Memory(server.child.pid!, server.base);
  try {
    console.log(
      `outage bench: ${INSTANCES} instances, ${ROOT === resolve(here, '..', '..') ? 'this checkout' : ROOT}, store ${STORE}`,
    );
    const ids: string[] = [];
    for (let i = 0; i < INSTANCES; i++) {
      const created = await fetch(`${server.base}/instance/create`, {
        method: 'POST',
        headers: { apikey: ADMIN_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `outage${i}`, webhookUrl: receiver.url, events: ['MESSAGE'] }),
      });
      if (!created.ok) throw new Error(`create: ${created.status} ${await created.text()}`);
      ids.push(((await created.json()) as { id: string }).id);
    }
    await new Promise((r) => setTimeout(r, 5_000));
    const idle = { ...memory.sample(), heap: await memory.heapUsed() };

    // Healthy: the receiver is up; the webhook's saturation rate.
    receiver.mark();
    memory.start();
    const healthyStart = performance.now();
    await appendEvents(pool, ids, 0, healthyPer, HEALTHY_BATCH);
    const healthyAppended = performance.now();
    await until(
      'the healthy phase delivered',
      async () => (receiver.received >= healthyPer * INSTANCES ? true : undefined),
      1_800_000,
    );
    const healthyMemory = memory.stop();
    const healthyRate = receiver.received / ((receiver.lastAt - (receiver.firstAt ?? healthyStart)) / 1000);
    const afterHealthy = { ...memory.sample(), heap: await memory.heapUsed() };
    console.log(
      `  healthy: ${receiver.received} events, appended in ${((healthyAppended - healthyStart) / 1000).toFixed(1)} s, delivered at ${Math.round(healthyRate)}/s`,
    );

    // Outage: the backlog builds while the receiver answers 503.
    const writesBefore = await tableWrites(pool);
    receiver.up = false;
    memory.start();
    const outageStart = performance.now();
    await appendEvents(pool, ids, healthyPer, perInstance, OUTAGE_BATCH);
    const appendedIn = (performance.now() - outageStart) / 1000;
    console.log(
      `  outage: ${perInstance * INSTANCES} events appended in ${appendedIn.toFixed(1)} s; holding ${HOLD_S} s`,
    );
    await new Promise((r) => setTimeout(r, HOLD_S * 1000));
    const outageMemory = memory.stop();
    const probes = receiver.refusedWhileDown;
    const { rows: dead } = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM es_dead_letters`);
    const writesDuring = await tableWrites(pool);

    // Drain: the receiver answers again.
    receiver.mark();
    receiver.up = true;
    memory.start();
    const healedAt = performance.now();
    await until(
      'the backlog delivered',
      async () => (receiver.received >= perInstance * INSTANCES ? true : undefined),
      3_600_000,
    ).catch((error: unknown) => console.log(`  ${String(error)}`));
    const drainMemory = memory.stop();
    const drainStartS = ((receiver.firstAt ?? healedAt) - healedAt) / 1000;
    const drainRate = receiver.received / ((receiver.lastAt - (receiver.firstAt ?? healedAt)) / 1000);
    const writesAfter = await tableWrites(pool);
    const missing = receiver.missing(INSTANCES, healthyPer + perInstance);
    const writes = (from: Record<string, number>, to: Record<string, number>): string =>
      Object.keys(to)
        .map((k) => `${k} ${to[k]! - (from[k] ?? 0)}`)
        .join(', ') || 'none';

    console.log('');
    console.log(
      table(
        [
          ['backlog', `${perInstance * INSTANCES} events over ${INSTANCES} instances, receiver down (503)`],
          ['requests while down', `${probes} (probes)`],
          ['dead letters', dead[0]!.n],
          ['lost (never arrived)', String(missing)],
          ['repeats (same event twice)', String(receiver.repeats)],
          ['out of order (per instance)', String(receiver.outOfOrder)],
          ['drain start after heal', `${drainStartS.toFixed(1)} s`],
          ['healthy saturation', `${Math.round(healthyRate)} events/s`],
          [
            'drain rate',
            `${Math.round(drainRate)} events/s = ${(drainRate / healthyRate).toFixed(2)}× healthy`,
          ],
          ['RSS idle (tree / node; V8 heap used)', `${idle.tree} / ${idle.node} MB; heap ${idle.heap} MB`],
          [
            'RSS after healthy phase',
            `${afterHealthy.tree} / ${afterHealthy.node} MB (peak ${healthyMemory.treePeak} / ${healthyMemory.nodePeak})`,
          ],
          [
            'RSS peak during outage',
            `${outageMemory.treePeak} / ${outageMemory.nodePeak} MB (+${outageMemory.treePeak - afterHealthy.tree} / +${outageMemory.nodePeak - afterHealthy.node}); heap peak ${outageMemory.heapPeak} MB`,
          ],
          [
            'RSS peak during drain',
            `${drainMemory.treePeak} / ${drainMemory.nodePeak} MB (+${drainMemory.treePeak - afterHealthy.tree} / +${drainMemory.nodePeak - afterHealthy.node}); heap peak ${drainMemory.heapPeak} MB`,
          ],
          ['row writes, outage', writes(writesBefore, writesDuring)],
          ['row writes, drain', writes(writesDuring, writesAfter)],
        ],
        ['outage bench', 'result'],
      ),
    );
  } finally {
    await pool.end().catch(() => undefined);
    await server.stop();
    await receiver.close();
  }
}
