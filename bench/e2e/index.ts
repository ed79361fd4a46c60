/**
 * End-to-end bench (`npm run bench -- e2e`): an inbound WhatsApp message → the webhook, through the whole
 * app, beside bare Baileys against the same sandbox in the same run.
 *
 * Processes: the sandbox (packages/sandbox/src/main.ts), the system under test in a process of its own, and this
 * one, which drives the simulated phones through the sandbox control API and runs the webhook receiver.
 *
 *   bare      bench/e2e/bare.ts: Baileys sockets that POST each messages.upsert themselves (the floor)
 *   zapwire   `node dist/src/main.js` (what `npm start` runs; built first when stale), configured by
 *             environment as a user would; instances
 *             created over HTTP with a webhook to the receiver, linked by QR scanned through the sandbox
 *
 * For each instance count (BENCH_E2E_INSTANCES, default 1,50) and each number of senders (BENCH_E2E_SENDERS,
 * default 1,4: one busy chat, the common case for a bot, and several): the senders' phones send texts
 * round-robin to the linked accounts, first at BENCH_E2E_RATE msg/s (100) for BENCH_E2E_SECONDS (30: long
 * enough that a queue which builds shows), then as fast as the sandbox takes them (BENCH_E2E_WINDOW control
 * calls in flight) for BENCH_E2E_SECONDS again. Latency = sandbox send call → the receiver has the POST.
 * Saturation = messages received / (last arrival − first send). Every figure is also given as a ratio to bare.
 * With BENCH_E2E_STAGES=1, zapwire's 100 msg/s latency is split at the log: send → the event stored
 * (es_events.created_at) and stored → the receiver has the POST.
 *
 * Stores (BENCH_STORE, default postgres,embedded): `postgres` = a fresh database on BENCH_DATABASE_URL's
 * server (default postgres://postgres@127.0.0.1:5432/postgres), dropped afterwards; `embedded` = no
 * DATABASE_URL at all, i.e. the app's default store (the embedded PostgreSQL under DATA_DIR).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort, serverEnv } from '../support/server-env.ts';
import { cpuBetween, processTree, snapshotCpu, type CpuGroups, type CpuSpent } from './cpu.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

const env = process.env;
const INSTANCE_COUNTS = (env['BENCH_E2E_INSTANCES'] ?? '1,50')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const STORES = (env['BENCH_STORE'] ?? 'postgres,embedded').split(',').map((s) => s.trim()) as Array<
  'postgres' | 'embedded'
>;
const RATE = Number(env['BENCH_E2E_RATE'] ?? 100);
const SECONDS = Number(env['BENCH_E2E_SECONDS'] ?? 30);
const WINDOW = Number(env['BENCH_E2E_WINDOW'] ?? 48);
const SENDER_COUNTS = (env['BENCH_E2E_SENDERS'] ?? '1,4')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const STAGES = env['BENCH_E2E_STAGES'] === '1';
/** Each instance count is measured this many times (bare and zapwire again each time); medians at the end. */
const ROUNDS = Math.max(1, Number(env['BENCH_E2E_ROUNDS'] ?? 1));
/** How long to wait for stragglers after the last send before counting a message as lost. */
const DRAIN_MS = Number(env['BENCH_E2E_DRAIN_MS'] ?? 30_000);
const SERVER_URL = env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ADMIN_KEY = 'bench-e2e-admin-key-0123456789';

// ------------------------------------------------------------------------------------------- sandbox

interface Sandbox {
  readonly child: ChildProcess;
  readonly wsUrl: string;
  readonly controlUrl: string;
  readonly rootPublicKeyBase64: string;
}

async function startSandbox(): Promise<Sandbox> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'packages/sandbox/src/main.ts', '--port', '0', '--small-prekeys', '--quiet'],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('Control API:')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`sandbox exited with ${code}`)));
  });
  return {
    child,
    wsUrl: /WA_WEBSOCKET_URL=(\S+)/.exec(out)![1]!,
    rootPublicKeyBase64: /WA_NOISE_ROOT_PUBLIC_KEY=(\S+)/.exec(out)![1]!,
    controlUrl: /Control API: (\S+)\/control/.exec(out)![1]!,
  };
}

async function call<T>(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as T };
}

let serial = 0;
async function newPhone(sandbox: Sandbox): Promise<string> {
  serial += 1;
  const phoneNumber = `5521${String(60_000_000 + serial)}`;
  const reply = await call<{ phoneNumber: string }>('POST', `${sandbox.controlUrl}/control/accounts`, {
    phoneNumber,
  });
  if (reply.status !== 200 && reply.status !== 201)
    throw new Error(`new phone: ${JSON.stringify(reply.body)}`);
  return reply.body.phoneNumber;
}

// ------------------------------------------------------------------------------------------- receiver

/** Arrival time of each bench message at the receiver, by its text. */
class Receiver {
  readonly arrivals = new Map<string, number>();
  /** When zapwire stored each message (the envelope's `timestamp`), on the same clock as `arrivals`. */
  readonly stored = new Map<string, number>();
  private server!: http.Server;
  url = '';

  async start(): Promise<void> {
    this.server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const at = performance.now();
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          // zapwire: one envelope, or an array of them when batching is on; bare: { text }.
          for (const item of Array.isArray(body) ? body : [body]) {
            const text = textOf(item);
            if (text?.startsWith('e2e:') && !this.arrivals.has(text)) {
              this.arrivals.set(text, at);
              const storedAt = Date.parse(String((item as { timestamp?: unknown }).timestamp));
              if (Number.isFinite(storedAt)) this.stored.set(text, storedAt - performance.timeOrigin);
            }
          }
        } catch {
          // not a bench message
        }
        response.writeHead(200).end();
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function textOf(item: unknown): string | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  const record = item as { text?: unknown; data?: { text?: unknown } };
  if (typeof record.text === 'string') return record.text;
  if (typeof record.data?.text === 'string') return record.data.text;
  return undefined;
}

// ------------------------------------------------------------------------------------------- variants

interface Variant {
  readonly label: string;
  /** Linked accounts (phone numbers) the customers write to. */
  readonly accounts: readonly string[];
  /** Resident memory of the system under test (its whole process tree), in MB. */
  rssMb(): number;
  /** The root process of the path under test (its tree is what its CPU is read from). */
  readonly pid: number | undefined;
  /** True when it uses the external PostgreSQL server, whose backends' CPU is then counted for it. */
  readonly externalPostgres: boolean;
  /** With BENCH_E2E_SQL=1: the SQL statements sent since the previous call, by text. */
  sqlCounts?: () => Promise<Record<string, number>>;
  stop(): Promise<void>;
}

function rssKbOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** RSS of a process and all its descendants (the embedded PostgreSQL is a child of the app), in MB. */
function rssOf(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const kb = processTree(pid).reduce((sum, p) => sum + rssKbOf(p), 0);
  return Math.round(kb / 1024);
}

function waitForExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function startBare(sandbox: Sandbox, receiver: Receiver, n: number): Promise<Variant> {
  const phones: string[] = [];
  for (let i = 0; i < n; i++) phones.push(await newPhone(sandbox));
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(here, 'bare.ts'),
      sandbox.wsUrl,
      sandbox.rootPublicKeyBase64,
      sandbox.controlUrl,
      receiver.url,
      ...phones,
    ],
    { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('READY')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`bare worker exited with ${code}`)));
  });
  return {
    label: 'bare Baileys → fetch POST',
    accounts: phones,
    rssMb: () => rssOf(child.pid),
    pid: child.pid,
    externalPostgres: false,
    async stop() {
      child.stdin!.end();
      await waitForExit(child, 5_000);
    },
  };
}

async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `zw_bench_${randomBytes(5).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const client = new pg.Client({ connectionString: SERVER_URL });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function startZapwire(
  sandbox: Sandbox,
  receiver: Receiver,
  n: number,
  store: 'postgres' | 'embedded',
): Promise<Variant> {
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-e2e-'));
  const database = store === 'postgres' ? await freshDatabase() : undefined;
  const port = await freePort();
  const childEnv = serverEnv({
    port,
    dataDir,
    adminKey: ADMIN_KEY,
    ...(database ? { databaseUrl: database.url } : {}),
    // Sink options under test (e.g. WEBHOOK_BATCH_MAX) pass through from the bench's environment.
    passWebhook: true,
    extra: {
      WA_WEBSOCKET_URL: sandbox.wsUrl,
      WA_NOISE_ROOT_PUBLIC_KEY: sandbox.rootPublicKeyBase64,
      RECONNECT_RATE_LIMIT_MS: '0',
    },
  });
  const countSql = env['BENCH_E2E_SQL'] === '1';
  const preload = countSql ? ['--import', 'tsx', '--import', './bench/e2e/count-sql.ts'] : [];
  const profile = env['BENCH_E2E_CPU_PROF']
    ? ['--cpu-prof', '--cpu-prof-dir', env['BENCH_E2E_CPU_PROF']]
    : [];
  const child = spawn(process.execPath, [...profile, ...preload, 'dist/src/main.js'], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const sqlWaiters: Array<(counts: Record<string, number>) => void> = [];
  let errBuffer = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    errBuffer += chunk;
    let newline: number;
    while ((newline = errBuffer.indexOf('\n')) >= 0) {
      const line = errBuffer.slice(0, newline);
      errBuffer = errBuffer.slice(newline + 1);
      if (line.startsWith('SQLCOUNT '))
        sqlWaiters.shift()?.(JSON.parse(line.slice(9)) as Record<string, number>);
      else process.stderr.write(`${line}\n`);
    }
  });
  const sqlCounts = (): Promise<Record<string, number>> =>
    new Promise((resolve) => {
      sqlWaiters.push(resolve);
      child.kill('SIGUSR2');
    });
  const base = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await waitForExit(child, 15_000);
    await database?.drop().catch(() => undefined);
    removeEmbeddedPostgres(join(dataDir, 'postgres'));
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await until(
      'zapwire up',
      async () => {
        if (child.exitCode !== null) throw new Error(`zapwire exited with ${child.exitCode}`);
        return (
          (await fetch(`${base}/health`)
            .then((r) => r.ok)
            .catch(() => false)) || undefined
        );
      },
      120_000,
    );
    const phones: string[] = [];
    for (let i = 0; i < n; i++) phones.push(await newPhone(sandbox));
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(8, n) }, async () => {
        while (next < n) {
          const i = next++;
          await pairInstance(base, sandbox, `e2e${i}`, phones[i]!, receiver.url);
        }
      }),
    );
    return {
      label: `zapwire on ${store === 'postgres' ? 'external PostgreSQL' : 'the embedded default (PostgreSQL)'}`,
      accounts: phones,
      rssMb: () => rssOf(child.pid),
      pid: child.pid,
      externalPostgres: store === 'postgres',
      ...(countSql ? { sqlCounts } : {}),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function pairInstance(
  base: string,
  sandbox: Sandbox,
  name: string,
  phone: string,
  webhookUrl: string,
): Promise<void> {
  const token = `tok-${name}-${randomBytes(6).toString('hex')}`;
  const admin = { apikey: ADMIN_KEY };
  const created = await call(
    'POST',
    `${base}/instance/create`,
    { name, token, webhookUrl, events: ['MESSAGE'] },
    admin,
  );
  if (created.status !== 201) throw new Error(`create ${name}: ${JSON.stringify(created.body)}`);
  const own = { apikey: token };
  const connect = await call('POST', `${base}/instance/connect`, {}, own);
  if (connect.status >= 300) throw new Error(`connect ${name}: ${JSON.stringify(connect.body)}`);
  const qr = await until(`${name} QR`, async () => {
    const reply = await call<{ code?: string }>('GET', `${base}/instance/qr`, undefined, own);
    return reply.status === 200 ? reply.body.code : undefined;
  });
  const scanned = await call('POST', `${sandbox.controlUrl}/control/accounts/${phone}/scan-qr`, { qr });
  if (scanned.status >= 300) throw new Error(`scan ${name}: ${JSON.stringify(scanned.body)}`);
  await until(`${name} open`, async () => {
    const reply = await call<{ state?: string }>('GET', `${base}/instance/status`, undefined, own);
    return reply.body.state === 'open' || undefined;
  });
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ------------------------------------------------------------------------------------------- load

interface Phase {
  readonly sent: number;
  readonly received: number;
  readonly p50: number;
  readonly p99: number;
  readonly msgsPerSecond: number;
  /** zapwire: sent → stored in the log, and stored → at the receiver (p50, p99), when the envelope says. */
  readonly stages?: { readonly toLog: [number, number]; readonly fromLog: [number, number] };
}

interface Load {
  readonly sandbox: Sandbox;
  readonly receiver: Receiver;
  readonly customers: readonly string[];
  readonly accounts: readonly string[];
  readonly run: string;
}

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  return (a / gcd(a, b)) * b;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Sends message `seq` from a customer's phone to an account; returns the text and when it was sent. */
async function send(load: Load, phase: string, seq: number, sent: Map<string, number>): Promise<void> {
  const text = `e2e:${load.run}:${phase}:${seq}`;
  const from = load.customers[seq % load.customers.length]!;
  const to = load.accounts[seq % load.accounts.length]!;
  sent.set(text, performance.now());
  for (let attempt = 1; ; attempt++) {
    try {
      const reply = await fetch(`${load.sandbox.controlUrl}/control/accounts/${from}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to, text }),
      });
      await reply.arrayBuffer();
      if (!reply.ok) throw new Error(`sandbox send: ${reply.status}`);
      return;
    } catch (error) {
      // A kept-alive connection the sandbox closed at that moment (reset, closed): send again. A repeat that
      // did arrive twice counts once at the receiver (first arrival per text).
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (attempt >= 3 || (code !== 'ECONNRESET' && code !== 'UND_ERR_SOCKET')) throw error;
    }
  }
}

async function drain(load: Load, sent: Map<string, number>): Promise<void> {
  const deadline = Date.now() + DRAIN_MS;
  while (Date.now() < deadline && [...sent.keys()].some((text) => !load.receiver.arrivals.has(text))) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function summarize(load: Load, sent: Map<string, number>): Phase {
  const latencies: number[] = [];
  const toLog: number[] = [];
  const fromLog: number[] = [];
  let first = Infinity;
  let last = -Infinity;
  for (const [text, t0] of sent) {
    first = Math.min(first, t0);
    const at = load.receiver.arrivals.get(text);
    if (at === undefined) continue;
    latencies.push(at - t0);
    last = Math.max(last, at);
    const stored = load.receiver.stored.get(text);
    if (stored !== undefined) {
      toLog.push(stored - t0);
      fromLog.push(at - stored);
    }
  }
  return {
    sent: sent.size,
    received: latencies.length,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    msgsPerSecond: latencies.length / ((last - first) / 1000),
    ...(toLog.length > 0
      ? {
          stages: {
            toLog: [percentile(toLog, 50), percentile(toLog, 99)] as [number, number],
            fromLog: [percentile(fromLog, 50), percentile(fromLog, 99)] as [number, number],
          },
        }
      : {}),
  };
}

/** BENCH_E2E_RATE messages a second for BENCH_E2E_SECONDS, on a fixed schedule (late sends catch up). */
async function paced(load: Load, phase: string): Promise<Phase> {
  const sent = new Map<string, number>();
  const total = Math.round(RATE * SECONDS);
  const started = performance.now();
  const calls: Array<Promise<unknown>> = [];
  const failures: unknown[] = [];
  let seq = 0;
  while (seq < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * RATE) + 1);
    // Caught at once (an unhandled rejection would end the bench without stopping its processes).
    while (seq < due)
      calls.push(send(load, phase, seq++, sent).catch((error: unknown) => failures.push(error)));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await Promise.all(calls);
  if (failures.length > 0) throw failures[0];
  await drain(load, sent);
  return summarize(load, sent);
}

/**
 * A new customer's first message to each account: the receiving side sets up a Signal session from a
 * pre-key message (and refills its pre-keys on the server now and then), work the other phases do not
 * see once their pairs have written. BENCH_E2E_FIRST_CONTACTS new phones (default max(20, accounts)),
 * 20 a second, one message each, round-robin over the accounts.
 */
async function firstContacts(load: Load, phase: string): Promise<Phase> {
  const count = Number(env['BENCH_E2E_FIRST_CONTACTS'] ?? Math.max(20, load.accounts.length));
  const phones: string[] = [];
  for (let i = 0; i < count; i++) phones.push(await newPhone(load.sandbox));
  const sent = new Map<string, number>();
  const calls: Array<Promise<void>> = [];
  for (let i = 0; i < count; i++) {
    // One customer per send: `send` picks customers[seq % length], so each phone writes exactly once.
    calls.push(send({ ...load, customers: [phones[i]!] }, phase, i, sent));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await Promise.all(calls);
  await drain(load, sent);
  return summarize(load, sent);
}

/** As fast as the sandbox accepts sends (BENCH_E2E_WINDOW in flight) for BENCH_E2E_SECONDS. */
async function saturation(load: Load, phase: string): Promise<Phase> {
  const sent = new Map<string, number>();
  const until = performance.now() + SECONDS * 1000;
  let seq = 0;
  await Promise.all(
    Array.from({ length: WINDOW }, async () => {
      while (performance.now() < until) await send(load, phase, seq++, sent);
    }),
  );
  await drain(load, sent);
  return summarize(load, sent);
}

// ------------------------------------------------------------------------------------------- table

interface Row {
  readonly n: number;
  /** Customers writing (BENCH_E2E_SENDERS). */
  readonly senders: number;
  /** 1.., when BENCH_E2E_ROUNDS repeats the measurement. */
  readonly round: number;
  readonly label: string;
  readonly paced: Phase;
  readonly firstContact: Phase;
  readonly saturated: Phase;
  readonly rssMb: number;
  /** CPU ms per received message during the saturated phase, by process group (the kernel's share apart). */
  readonly cpuPerMessage: Record<string, CpuSpent>;
}

function table(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => (i === 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const ms = (value: number): string => (Number.isFinite(value) ? String(Math.round(value)) : '–');

function render(rows: readonly Row[]): string {
  const out: string[][] = [];
  for (const row of rows) {
    const bare = bareOf(rows, row);
    const isBare = row === bare;
    const ratio = (value: number, of: number | undefined): string =>
      isBare || of === undefined || !Number.isFinite(value) ? '' : ` (${(value / of).toFixed(2)}×)`;
    const delta = (value: number, of: number | undefined): string =>
      isBare || of === undefined || !Number.isFinite(value)
        ? ''
        : ` (${value - of >= 0 ? '+' : ''}${Math.round(value - of)})`;
    const lost = (phase: Phase): string =>
      phase.received < phase.sent ? ` ⚠ ${phase.sent - phase.received} not in ${DRAIN_MS / 1000} s` : '';
    out.push([
      ROUNDS > 1 ? `${row.n} #${row.round}` : String(row.n),
      row.label,
      String(row.senders),
      `${ms(row.paced.p50)} / ${ms(row.paced.p99)}${delta(row.paced.p99, bare?.paced.p99)}${lost(row.paced)}`,
      `${ms(row.firstContact.p50)} / ${ms(row.firstContact.p99)}${delta(row.firstContact.p99, bare?.firstContact.p99)}${lost(row.firstContact)}`,
      `${ms(row.saturated.p50)} / ${ms(row.saturated.p99)}`,
      `${Math.round(row.saturated.msgsPerSecond)}${ratio(row.saturated.msgsPerSecond, bare?.saturated.msgsPerSecond)}${lost(row.saturated)}`,
      String(row.rssMb),
    ]);
  }
  return table(out, [
    'inst',
    'path',
    'senders',
    `${RATE} msg/s: p50 / p99 ms (Δp99)`,
    'first contact: p50 / p99 ms (Δp99)',
    'saturated: p50 / p99 ms',
    'saturation msg/s (× bare)',
    'RSS MB',
  ]);
}

/** The bare Baileys row measured beside `row` (same instance count, senders and round). */
function bareOf(rows: readonly Row[], row: Row): Row | undefined {
  return rows.find(
    (r) => r.n === row.n && r.senders === row.senders && r.round === row.round && r.label.startsWith('bare'),
  );
}

/** zapwire's 100 msg/s latency split at the log (BENCH_E2E_STAGES=1). */
function renderStages(rows: readonly Row[]): string {
  const out: string[][] = [];
  for (const row of rows) {
    const stages = row.paced.stages;
    if (!stages) continue;
    out.push([
      String(row.n),
      row.label,
      String(row.senders),
      `${ms(row.paced.p50)} / ${ms(row.paced.p99)}`,
      `${ms(stages.toLog[0])} / ${ms(stages.toLog[1])}`,
      `${ms(stages.fromLog[0])} / ${ms(stages.fromLog[1])}`,
    ]);
  }
  return table(out, [
    'inst',
    'path',
    'senders',
    'send → receiver p50 / p99',
    'send → stored in the log',
    'stored → receiver',
  ]);
}

/** With several rounds: each path's saturation ratio per round and their median. */
function renderMedians(rows: readonly Row[]): string {
  const out: string[][] = [];
  const keys = [
    ...new Set(
      rows.filter((r) => !r.label.startsWith('bare')).map((r) => `${r.n}\u0000${r.label}\u0000${r.senders}`),
    ),
  ];
  for (const k of keys) {
    const [n, label, senders] = k.split('\u0000') as [string, string, string];
    const ratios = rows
      .filter((r) => String(r.n) === n && r.label === label && String(r.senders) === senders)
      .map((r) => r.saturated.msgsPerSecond / (bareOf(rows, r)?.saturated.msgsPerSecond ?? NaN))
      .filter(Number.isFinite);
    // The lower of the middle two for an even number of rounds.
    const median = percentile(ratios, 50);
    out.push([
      n,
      `${label}, ${senders} sender(s)`,
      ratios.map((r) => `${r.toFixed(2)}×`).join(', '),
      Number.isFinite(median) ? `${median.toFixed(2)}×` : '–',
    ]);
  }
  return table(out, ['inst', 'path', 'saturation × bare, per round', 'median']);
}

/** Where the CPU of a message went at saturation: the yardstick behind the saturation ratio. */
function renderCpu(rows: readonly Row[]): string {
  const out: string[][] = [];
  const fmt = (value: CpuSpent | undefined): string =>
    value === undefined ? '–' : `${value.cpuMs.toFixed(2)} (${value.sysMs.toFixed(2)})`;
  const sum = (c: Record<string, CpuSpent>): CpuSpent => ({
    cpuMs: Object.values(c).reduce((a, b) => a + b.cpuMs, 0),
    sysMs: Object.values(c).reduce((a, b) => a + b.sysMs, 0),
  });
  for (const row of rows) {
    const c = row.cpuPerMessage;
    const total = sum(c);
    const bare = bareOf(rows, row);
    const bareTotal = bare ? sum(bare.cpuPerMessage).cpuMs : undefined;
    out.push([
      ROUNDS > 1 ? `${row.n} #${row.round}` : String(row.n),
      `${row.label}, ${row.senders} sender(s)`,
      fmt(c['path']),
      fmt(c['postgres']),
      fmt(c['sandbox']),
      fmt(c['bench']),
      `${fmt(total)}${bare && bare !== row && bareTotal ? ` ${(total.cpuMs / bareTotal).toFixed(2)}×` : ''}`,
    ]);
  }
  return table(out, [
    'inst',
    'path',
    'path tree',
    'ext. PostgreSQL',
    'sandbox',
    'bench (phones, receiver)',
    'total, × bare',
  ]);
}

function printSqlCounts(counts: Record<string, number>, messages: number, n: number): void {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(
    `  N=${n}: ${(total / messages).toFixed(1)} SQL statements per message (${total} for ${messages}):`,
  );
  for (const [text, count] of Object.entries(counts).slice(0, 15)) {
    console.log(`    ${(count / messages).toFixed(2).padStart(6)}  ${text}`);
  }
}

// ------------------------------------------------------------------------------------------- main

export default async function benchE2e(): Promise<void> {
  // The app runs as `npm start` runs it: compiled, from dist/ (rebuilt only when a source is newer).
  const build = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (build.status !== 0) throw new Error('npm run build failed');
  const sandbox = await startSandbox();
  const receiver = new Receiver();
  await receiver.start();
  const rows: Row[] = [];
  const run = randomBytes(3).toString('hex');
  try {
    const customers: string[] = [];
    for (let i = 0; i < Math.max(...SENDER_COUNTS); i++) customers.push(await newPhone(sandbox));
    for (const n of INSTANCE_COUNTS)
      for (let round = 1; round <= ROUNDS; round++) {
        const variants: Array<() => Promise<Variant>> = [
          () => startBare(sandbox, receiver, n),
          ...STORES.map((store) => () => startZapwire(sandbox, receiver, n, store)),
        ];
        for (const start of variants) {
          const t0 = Date.now();
          const variant = await start();
          try {
            // Each number of senders against the same running path.
            for (const senders of SENDER_COUNTS) {
              const load: Load = {
                sandbox,
                receiver,
                customers: customers.slice(0, senders),
                accounts: variant.accounts,
                run: `${run}${rows.length}`,
              };
              const warm = new Map<string, number>();
              // Every (customer, account) pair the phases use writes once first: its Signal session is set
              // up (a pre-key message, pre-key refills) here rather than inside the measured phases.
              for (let i = 0; i < Math.max(20, lcm(n, senders)); i++) await send(load, 'warm', i, warm);
              await drain(load, warm);
              await variant.sqlCounts?.();
              const pacedPhase = await paced(load, 'paced');
              if (variant.sqlCounts) printSqlCounts(await variant.sqlCounts(), pacedPhase.sent, n);
              const firstContact = await firstContacts(load, 'first');
              await variant.sqlCounts?.();
              const groups: CpuGroups = {
                trees: { bench: [process.pid], sandbox: [sandbox.child.pid!], path: [variant.pid!] },
                ...(variant.externalPostgres ? { externalPostgres: 'postgres' } : {}),
              };
              const cpuBefore = snapshotCpu(groups);
              const saturated = await saturation(load, 'sat');
              const cpu = cpuBetween(cpuBefore, snapshotCpu(groups));
              if (variant.sqlCounts) {
                console.log('  saturated phase:');
                printSqlCounts(await variant.sqlCounts(), saturated.received, n);
              }
              const cpuPerMessage = Object.fromEntries(
                Object.entries(cpu).map(([group, spent]) => [
                  group,
                  {
                    cpuMs: spent.cpuMs / Math.max(1, saturated.received),
                    sysMs: spent.sysMs / Math.max(1, saturated.received),
                  },
                ]),
              );
              rows.push({
                n,
                senders,
                round,
                label: variant.label,
                paced: pacedPhase,
                firstContact,
                saturated,
                rssMb: variant.rssMb(),
                cpuPerMessage,
              });
              console.log(
                `  N=${n} ${variant.label}, ${senders} sender(s): ${Math.round((Date.now() - t0) / 1000)} s; ` +
                  `paced ${pacedPhase.received}/${pacedPhase.sent}, first contact ${firstContact.received}/${firstContact.sent}, saturated ${saturated.received}/${saturated.sent}`,
              );
            }
          } finally {
            await variant.stop();
          }
        }
      }
  } finally {
    await receiver.close();
    sandbox.child.kill('SIGTERM');
    await waitForExit(sandbox.child, 5_000);
  }
  console.log('');
  console.log(render(rows));
  if (STAGES) {
    console.log(
      `\nzapwire at ${RATE} msg/s, split at the log (the envelope's timestamp is when the event was stored):\n`,
    );
    console.log(renderStages(rows));
  }
  if (ROUNDS > 1) {
    console.log(`\nSaturation over ${ROUNDS} rounds (each against bare Baileys of its own round):\n`);
    console.log(renderMedians(rows));
  }
  console.log(
    "\nCPU ms per message at saturation, from /proc: user + kernel (the kernel's share in parentheses), per process group:\n",
  );
  console.log(renderCpu(rows));
  console.log(
    `\nlatency = sandbox send call → the receiver has the POST (same clock); saturation = received / ` +
      `(last arrival − first send) with ${WINDOW} sends in flight for ${SECONDS} s; ratios to bare Baileys in this run.`,
  );
}
