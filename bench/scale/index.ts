/**
 * Scale bench (`npm run bench -- scale`): N paired instances on one node, beside N bare Baileys sockets in
 * the same run, against one sandbox in a process of its own (packages/sandbox/src/main.ts; in-process it would share
 * the event loop it is measuring). For each N (BENCH_SCALE_INSTANCES, default 100,300):
 *
 *   bare      bench/scale/bare.ts: Baileys sockets with in-memory auth that POST each incoming message to
 *             the receiver themselves (the floor)
 *   zapwire   `node dist/src/main.js` as `npm start` runs it (built first when stale), on its default store
 *             (the embedded PostgreSQL under DATA_DIR); instances created and linked over HTTP
 *
 * Each variant in turn: one paired instance (the baseline), then N more; memory of the whole process tree
 * after BENCH_SCALE_SETTLE_MS idle. Then a restart: bare ends every socket and opens them all at once;
 * zapwire is stopped (SIGTERM) and started again on the same data, timed from the new process's spawn until
 * the sandbox counts all N+1 devices online; the sandbox's login log (GET /control/logins) gives the most
 * logins under way at once and the most in one second (a login storm shows in both). Then BENCH_SCALE_SECONDS
 * (30) of load: every account receives BENCH_SCALE_RATE (1) message a second from a customer phone (latency =
 * sandbox send call → the receiver has the POST); meanwhile zapwire answers GET /instance/status (20/s) and
 * POST /send/text (5/s) for random instances with their own tokens. Event-loop delay p99 over the load phase:
 * zapwire's prom-client gauge (reset by each scrape of /metrics), bare's own histogram.
 *
 * The machine may be shared: the 1-minute load average is printed beside each phase, and zapwire's
 * figures are given as ratios to bare's in the same run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Agent, fetch as undiciFetch } from 'undici';
import { treeMemory } from '../footprint/process-tree.ts';
import { freePort, serverEnv, START_NODE_FLAGS } from '../support/server-env.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const env = process.env;
const SIZES = (env['BENCH_SCALE_INSTANCES'] ?? '100,300')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0);
const SECONDS = Number(env['BENCH_SCALE_SECONDS'] ?? 30);
const RATE = Number(env['BENCH_SCALE_RATE'] ?? 1);
const SETTLE_MS = Number(env['BENCH_SCALE_SETTLE_MS'] ?? 10_000);
const VARIANTS = (env['BENCH_SCALE_VARIANTS'] ?? 'bare,zapwire').split(',').map((s) => s.trim());
/** Extra environment for the zapwire server, `K=V;K=V` (e.g. RESTORE_CONCURRENCY=4). */
const SERVER_EXTRA = Object.fromEntries(
  (env['BENCH_SCALE_SERVER_ENV'] ?? '')
    .split(';')
    .filter((pair) => pair.includes('='))
    .map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
);
const CUSTOMERS = 8;
const STATUS_PER_SECOND = 20;
const SEND_PER_SECOND = 5;
const DRAIN_MS = 30_000;
const ADMIN_KEY = 'bench-scale-admin-key-0123456789';
const pool = new Agent({ connections: 128, keepAliveTimeout: 30_000 });
/**
 * The API probes' own connections, well under the server's HTTP_MAX_CONNECTIONS_PER_ADDRESS (64): past it
 * the server resets new connections, which would measure the cap rather than the latency.
 */
const apiPool = new Agent({ connections: 16, keepAliveTimeout: 30_000 });
/** Probes in flight at most; a probe due while that many wait is counted as skipped (the API is behind). */
const MAX_PROBES_IN_FLIGHT = 32;

// ------------------------------------------------------------------------------------------- plumbing

async function call<T>(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
  dispatcher: Agent = pool,
): Promise<{ status: number; body: T }> {
  const response = await undiciFetch(url, {
    dispatcher,
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  let parsed: unknown = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { text };
  }
  return { status: response.status, body: parsed as T };
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
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

const load1 = (): number => Math.round(loadavg()[0]! * 10) / 10;

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

let serial = 0;
async function newPhone(sandbox: Sandbox): Promise<string> {
  serial += 1;
  const reply = await call<{ phoneNumber: string }>('POST', `${sandbox.controlUrl}/control/accounts`, {
    phoneNumber: `5531${String(50_000_000 + serial)}`,
  });
  if (reply.status !== 200 && reply.status !== 201)
    throw new Error(`new phone: ${JSON.stringify(reply.body)}`);
  return reply.body.phoneNumber;
}

/**
 * The logins of a restart, from the sandbox's login log: the most that were under way at once (socket
 * opened, not logged in yet) and the most that ended in one second. A login storm shows in both.
 */
async function loginPeaks(sandbox: Sandbox, since: number): Promise<{ atOnce: number; perSecond: number }> {
  const reply = await call<Array<{ openedAt: number; loggedInAt: number }>>(
    'GET',
    `${sandbox.controlUrl}/control/logins?since=${since}`,
  );
  const logins = reply.body.filter((login) => login.openedAt >= since);
  const edges = logins
    .flatMap((login): Array<[number, number]> => [
      [login.openedAt, 1],
      [login.loggedInAt, -1],
    ])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let underWay = 0;
  let atOnce = 0;
  for (const [, change] of edges) atOnce = Math.max(atOnce, (underWay += change));
  const perSecond = new Map<number, number>();
  for (const login of logins) {
    const second = Math.floor(login.loggedInAt / 1000);
    perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
  }
  return { atOnce, perSecond: Math.max(0, ...perSecond.values()) };
}

async function devicesOnline(sandbox: Sandbox): Promise<number> {
  const reply = await call<{ devicesOnline: number }>('GET', `${sandbox.controlUrl}/control/stats`);
  return reply.body.devicesOnline;
}

// ------------------------------------------------------------------------------------------- receiver

class Receiver {
  readonly arrivals = new Map<string, number>();
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
          for (const item of Array.isArray(body) ? body : [body]) {
            const text = textOf(item);
            if (text?.startsWith('sc:') && !this.arrivals.has(text)) this.arrivals.set(text, at);
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

interface Row {
  readonly n: number;
  readonly variant: 'bare' | 'zapwire';
  readonly rssPerInstanceKb: number;
  readonly pssPerInstanceKb: number | undefined;
  /** Of the RSS per instance, the node process's share (the rest is the embedded PostgreSQL's). */
  readonly nodeRssPerInstanceKb: number;
  readonly rssMb: number;
  readonly pairingSeconds: number;
  readonly restartMs: number;
  /** bare: logins of the all-at-once restart that failed and were tried again. */
  readonly failedLogins?: number;
  /** The restart's logins (the sandbox's log): the most under way at once, and the most in one second. */
  readonly logins: { readonly atOnce: number; readonly perSecond: number };
  /** zapwire: spawn → first 200 from /health. */
  readonly healthMs?: number;
  /** zapwire with a restore plan: spawn → /health's `restoring.done` reached its total. */
  readonly restoredMs?: number;
  readonly restartLoad: number;
  readonly loopP99Ms: number;
  readonly statusP99Ms?: number;
  readonly sendP99Ms?: number;
  /** API probes that failed (not 2xx, or no answer) and probes skipped because 32 were in flight. */
  readonly apiErrors?: number;
  readonly apiSkipped?: number;
  /** Inbound sends the sandbox refused or dropped (the bench's side). */
  readonly sendFailures: number;
  readonly inboundP50Ms: number;
  readonly inboundP99Ms: number;
  readonly sent: number;
  readonly received: number;
  readonly loadLoad: number;
}

interface Running {
  readonly pid: number;
  /** Linked accounts (phone numbers), one per instance. */
  readonly accounts: string[];
  loopP99(): Promise<number>;
}

interface Memory {
  readonly rssKb: number;
  readonly pssKb: number | undefined;
  /** The root (node) process alone; the rest of the tree is the embedded PostgreSQL. */
  readonly nodeRssKb: number;
}

/** After SETTLE_MS idle, a full GC in the process (`collect`), then the tree's memory. */
async function memoryOf(pid: number, collect: () => Promise<void>): Promise<Memory> {
  await sleep(SETTLE_MS);
  await collect();
  await sleep(1_000);
  const tree = treeMemory(pid);
  const root = tree.processes.find((p) => p.pid === pid);
  return { rssKb: tree.rssKb, pssKb: tree.pssKb, nodeRssKb: root?.rssKb ?? NaN };
}

function perInstance(before: number | undefined, after: number | undefined, n: number): number | undefined {
  return before === undefined || after === undefined ? undefined : Math.round((after - before) / n);
}

/** Bare Baileys: the worker process and its line protocol. */
async function runBare(sandbox: Sandbox, receiver: Receiver, n: number, customers: string[]): Promise<Row> {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      '--import',
      'tsx',
      join(here, 'bare.ts'),
      sandbox.wsUrl,
      sandbox.rootPublicKeyBase64,
      sandbox.controlUrl,
      receiver.url,
    ],
    { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const replies = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  replies.on('line', (line) => waiting.shift()?.(line));
  const command = async <T>(message: unknown): Promise<T> => {
    const reply = new Promise<string>((resolve) => waiting.push(resolve));
    child.stdin!.write(`${JSON.stringify(message)}\n`);
    const parsed = JSON.parse(await reply) as T & { error?: string };
    if (parsed.error) throw new Error(`bare worker: ${parsed.error}`);
    return parsed;
  };
  try {
    const accounts = [await newPhone(sandbox)];
    await command({ pair: accounts });
    const collect = async () => void (await command({ gc: true }));
    const base = await memoryOf(child.pid!, collect);
    const more: string[] = [];
    for (let i = 0; i < n; i++) more.push(await newPhone(sandbox));
    const t0 = performance.now();
    await command({ pair: more });
    const pairingSeconds = (performance.now() - t0) / 1000;
    accounts.push(...more);
    const after = await memoryOf(child.pid!, collect);
    const restartedAt = Date.now();
    const { restartMs, failedLogins } = await command<{ restartMs: number; failedLogins: number }>({
      restart: true,
    });
    const restartLoad = load1();
    const logins = await loginPeaks(sandbox, restartedAt);
    const running: Running = {
      pid: child.pid!,
      accounts,
      loopP99: async () => (await command<{ p99: number }>({ loop: true })).p99,
    };
    const load = await loadPhase(sandbox, receiver, running, customers, undefined);
    return {
      n,
      variant: 'bare',
      rssPerInstanceKb: perInstance(base.rssKb, after.rssKb, n)!,
      pssPerInstanceKb: perInstance(base.pssKb, after.pssKb, n),
      nodeRssPerInstanceKb: perInstance(base.nodeRssKb, after.nodeRssKb, n)!,
      rssMb: Math.round(after.rssKb / 1024),
      pairingSeconds,
      restartMs,
      failedLogins,
      logins,
      restartLoad,
      ...load,
    };
  } finally {
    child.stdin!.end();
    await waitForExit(child, 10_000);
  }
}

interface Server {
  readonly child: ChildProcess;
  readonly base: string;
  readonly spawnedAt: number;
  /** Waiting for the GC the last SIGUSR2 asked for. */
  readonly collected: Array<() => void>;
}

function startServer(sandbox: Sandbox, dataDir: string, port: number): Server {
  const childEnv = serverEnv({
    port,
    dataDir,
    adminKey: ADMIN_KEY,
    ...(env['BENCH_DATABASE_URL'] ? { databaseUrl: env['BENCH_DATABASE_URL'] } : {}),
    extra: {
      WA_WEBSOCKET_URL: sandbox.wsUrl,
      WA_NOISE_ROOT_PUBLIC_KEY: sandbox.rootPublicKeyBase64,
      RECONNECT_RATE_LIMIT_MS: '0',
      ...SERVER_EXTRA,
    },
  });
  const profile = env['BENCH_SCALE_CPU_PROF']
    ? ['--cpu-prof', '--cpu-prof-dir', env['BENCH_SCALE_CPU_PROF']]
    : [];
  const spawnedAt = performance.now();
  // As `npm start` runs it (package.json's start script).
  // As `npm start` runs it (package.json's start script), plus a full GC on SIGUSR2 (gc-on-signal.mjs)
  // so that memory is read after a collection, as bare Baileys' is.
  const child = spawn(
    process.execPath,
    [
      ...START_NODE_FLAGS,
      '--expose-gc',
      '--import',
      pathToFileURL(join(here, 'gc-on-signal.mjs')).href,
      ...profile,
      'dist/src/main.js',
    ],
    { cwd: root, env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const collected: Array<() => void> = [];
  const lines = createInterface({ input: child.stderr! });
  lines.on('line', (line) => {
    if (line === 'GC-DONE') collected.shift()?.();
    else process.stderr.write(`${line}\n`);
  });
  return { child, base: `http://127.0.0.1:${port}`, spawnedAt, collected };
}

function collectGarbage(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.collected.push(resolve);
    server.child.kill('SIGUSR2');
  });
}

async function healthy(server: Server): Promise<unknown> {
  return until(
    'zapwire up',
    async () => {
      if (server.child.exitCode !== null) throw new Error(`zapwire exited with ${server.child.exitCode}`);
      const reply = await call<Record<string, unknown>>('GET', `${server.base}/health`).catch(
        () => undefined,
      );
      return reply?.status === 200 ? reply.body : undefined;
    },
    300_000,
  );
}

async function pairInstance(
  server: Server,
  sandbox: Sandbox,
  name: string,
  phone: string,
  webhookUrl: string,
): Promise<string> {
  const token = `tok-${name}-${randomBytes(6).toString('hex')}`;
  const created = await call(
    'POST',
    `${server.base}/instance/create`,
    { name, token, webhookUrl, events: ['MESSAGE'] },
    { apikey: ADMIN_KEY },
  );
  if (created.status !== 201) throw new Error(`create ${name}: ${JSON.stringify(created.body)}`);
  const own = { apikey: token };
  const connect = await call('POST', `${server.base}/instance/connect`, {}, own);
  if (connect.status >= 300) throw new Error(`connect ${name}: ${JSON.stringify(connect.body)}`);
  const qr = await until(`${name} QR`, async () => {
    const reply = await call<{ code?: string }>('GET', `${server.base}/instance/qr`, undefined, own);
    return reply.status === 200 ? reply.body.code : undefined;
  });
  const scanned = await call('POST', `${sandbox.controlUrl}/control/accounts/${phone}/scan-qr`, { qr });
  if (scanned.status >= 300) throw new Error(`scan ${name}: ${JSON.stringify(scanned.body)}`);
  await until(`${name} open`, async () => {
    const reply = await call<{ state?: string }>('GET', `${server.base}/instance/status`, undefined, own);
    return reply.body.state === 'open' || undefined;
  });
  return token;
}

async function pairMany(
  server: Server,
  sandbox: Sandbox,
  receiver: Receiver,
  from: number,
  phones: readonly string[],
  tokens: string[],
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(8, phones.length) }, async () => {
      while (next < phones.length) {
        const i = next++;
        tokens[from + i] = await pairInstance(server, sandbox, `sc${from + i}`, phones[i]!, receiver.url);
      }
    }),
  );
}

async function loopP99Of(server: Server): Promise<number> {
  const reply = await undiciFetch(`${server.base}/metrics`, {
    dispatcher: pool,
    headers: { apikey: ADMIN_KEY },
  });
  const text = await reply.text();
  const match = /^zapwire_nodejs_eventloop_lag_p99_seconds\s+(\S+)/m.exec(text);
  return match ? Number(match[1]) * 1000 : NaN;
}

async function stopServer(server: Server): Promise<void> {
  server.child.kill('SIGTERM');
  await waitForExit(server.child, 30_000);
}

async function runZapwire(
  sandbox: Sandbox,
  receiver: Receiver,
  n: number,
  customers: string[],
): Promise<Row> {
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-scale-'));
  const port = await freePort();
  let server = startServer(sandbox, dataDir, port);
  try {
    await healthy(server);
    const accounts = [await newPhone(sandbox)];
    const tokens: string[] = [];
    await pairMany(server, sandbox, receiver, 0, accounts, tokens);
    const base = await memoryOf(server.child.pid!, () => collectGarbage(server));
    const more: string[] = [];
    for (let i = 0; i < n; i++) more.push(await newPhone(sandbox));
    const t0 = performance.now();
    await pairMany(server, sandbox, receiver, 1, more, tokens);
    const pairingSeconds = (performance.now() - t0) / 1000;
    accounts.push(...more);
    const after = await memoryOf(server.child.pid!, () => collectGarbage(server));

    // Restart: stop (every live instance records its shutdown), start again on the same data.
    await stopServer(server);
    await until('devices offline after stop', async () =>
      (await devicesOnline(sandbox)) === 0 ? true : undefined,
    );
    const restartedAt = Date.now();
    server = startServer(sandbox, dataDir, port);
    const current = server;
    let healthMs: number | undefined;
    let restoredMs: number | undefined;
    const watchHealth = (async () => {
      while (restoredMs === undefined && current.child.exitCode === null) {
        const reply = await call<{ restoring?: { done: number; total: number } }>(
          'GET',
          `${current.base}/health`,
        ).catch(() => undefined);
        const at = performance.now() - current.spawnedAt;
        if (reply?.status === 200) {
          healthMs ??= at;
          const restoring = reply.body.restoring;
          if (!restoring) break; // no restore progress on /health (before issue 26)
          if (restoring.total > 0 && restoring.done >= restoring.total) restoredMs = at;
        }
        await sleep(200);
      }
    })();
    await until(
      'all open after restart',
      async () => {
        if (current.child.exitCode !== null) throw new Error(`zapwire exited with ${current.child.exitCode}`);
        return (await devicesOnline(sandbox)) >= n + 1 ? true : undefined;
      },
      1_800_000,
    );
    const restartMs = performance.now() - server.spawnedAt;
    const restartLoad = load1();
    const logins = await loginPeaks(sandbox, restartedAt);
    await Promise.race([watchHealth, sleep(10_000)]);

    const running: Running = { pid: server.child.pid!, accounts, loopP99: () => loopP99Of(current) };
    const load = await loadPhase(sandbox, receiver, running, customers, { server: current, tokens });
    return {
      n,
      variant: 'zapwire',
      rssPerInstanceKb: perInstance(base.rssKb, after.rssKb, n)!,
      pssPerInstanceKb: perInstance(base.pssKb, after.pssKb, n),
      nodeRssPerInstanceKb: perInstance(base.nodeRssKb, after.nodeRssKb, n)!,
      rssMb: Math.round(after.rssKb / 1024),
      pairingSeconds,
      restartMs,
      ...(healthMs !== undefined ? { healthMs } : {}),
      ...(restoredMs !== undefined ? { restoredMs } : {}),
      logins,
      restartLoad,
      ...load,
    };
  } finally {
    await stopServer(server);
    removeEmbeddedPostgres(join(dataDir, 'postgres'));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------- load

let run = 0;

async function sendInbound(sandbox: Sandbox, from: string, to: string, text: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const reply = await undiciFetch(`${sandbox.controlUrl}/control/accounts/${from}/messages`, {
        dispatcher: pool,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to, text }),
      });
      await reply.arrayBuffer();
      if (!reply.ok) throw new Error(`sandbox send: ${reply.status}`);
      return;
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (attempt >= 3 || (code !== 'ECONNRESET' && code !== 'UND_ERR_SOCKET')) throw error;
    }
  }
}

async function drain(receiver: Receiver, sent: Map<string, number>): Promise<void> {
  const deadline = Date.now() + DRAIN_MS;
  while (Date.now() < deadline && [...sent.keys()].some((text) => !receiver.arrivals.has(text)))
    await sleep(50);
}

type LoadFigures = Pick<
  Row,
  | 'loopP99Ms'
  | 'statusP99Ms'
  | 'sendP99Ms'
  | 'apiErrors'
  | 'apiSkipped'
  | 'sendFailures'
  | 'inboundP50Ms'
  | 'inboundP99Ms'
  | 'sent'
  | 'received'
  | 'loadLoad'
>;

/**
 * RATE messages a second to every account for SECONDS, spread evenly over each second; with an API,
 * status and send probes beside. Each account hears from one customer (its Signal session is set up by
 * a warm-up message first).
 */
async function loadPhase(
  sandbox: Sandbox,
  receiver: Receiver,
  running: Running,
  customers: readonly string[],
  api: { server: Server; tokens: readonly string[] } | undefined,
): Promise<LoadFigures> {
  run += 1;
  const { accounts } = running;
  const customerOf = (i: number) => customers[i % customers.length]!;
  const warm = new Map<string, number>();
  await Promise.all(
    accounts.map(async (account, i) => {
      const text = `sc:${run}:warm:${i}`;
      warm.set(text, performance.now());
      await sendInbound(sandbox, customerOf(i), account, text);
    }),
  );
  await drain(receiver, warm);
  await running.loopP99(); // resets the histogram

  const sent = new Map<string, number>();
  const failures: unknown[] = [];
  const calls: Array<Promise<unknown>> = [];
  const total = Math.round(accounts.length * RATE * SECONDS);
  const perSecond = accounts.length * RATE;
  const statusLatencies: number[] = [];
  const sendLatencies: number[] = [];
  let apiErrors = 0;
  const started = performance.now();
  let stopProbes = false;
  let inFlight = 0;
  let skipped = 0;
  /** One kind of API request, `perSecond` of them, until the load ends; latency of each 2xx. */
  const probe = async (perSecond: number, request: () => Promise<{ status: number }>, into: number[]) => {
    while (!stopProbes) {
      if (inFlight >= MAX_PROBES_IN_FLIGHT) skipped += 1;
      else {
        inFlight += 1;
        const t0 = performance.now();
        calls.push(
          request()
            .then(
              (reply) => {
                if (reply.status >= 300) apiErrors += 1;
                else into.push(performance.now() - t0);
              },
              () => (apiErrors += 1),
            )
            .finally(() => (inFlight -= 1)),
        );
      }
      await sleep(1000 / perSecond);
    }
  };
  const probes = api
    ? Promise.all([
        probe(
          STATUS_PER_SECOND,
          () =>
            call(
              'GET',
              `${api.server.base}/instance/status`,
              undefined,
              { apikey: api.tokens[Math.floor(Math.random() * api.tokens.length)]! },
              apiPool,
            ),
          statusLatencies,
        ),
        probe(
          SEND_PER_SECOND,
          () => {
            const i = Math.floor(Math.random() * api.tokens.length);
            return call(
              'POST',
              `${api.server.base}/send/text`,
              { number: customerOf(i), text: `probe ${performance.now()}` },
              { apikey: api.tokens[i]! },
              apiPool,
            );
          },
          sendLatencies,
        ),
      ])
    : Promise.resolve();
  let seq = 0;
  while (seq < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * perSecond) + 1);
    while (seq < due) {
      const i = seq % accounts.length;
      const text = `sc:${run}:${seq}`;
      sent.set(text, performance.now());
      calls.push(
        sendInbound(sandbox, customerOf(i), accounts[i]!, text).catch((error: unknown) =>
          failures.push(error),
        ),
      );
      seq += 1;
    }
    await sleep(5);
  }
  stopProbes = true;
  await probes;
  await Promise.all(calls);
  const loopP99Ms = await running.loopP99();
  const loadLoad = load1();
  if (failures.length > 0)
    console.log(`  ${failures.length} inbound send(s) failed, e.g. ${String(failures[0])}`);
  await drain(receiver, sent);
  const latencies: number[] = [];
  for (const [text, t0] of sent) {
    const at = receiver.arrivals.get(text);
    if (at !== undefined) latencies.push(at - t0);
  }
  return {
    loopP99Ms,
    ...(api
      ? {
          statusP99Ms: percentile(statusLatencies, 99),
          sendP99Ms: percentile(sendLatencies, 99),
          apiErrors,
          apiSkipped: skipped,
        }
      : {}),
    inboundP50Ms: percentile(latencies, 50),
    inboundP99Ms: percentile(latencies, 99),
    sent: sent.size,
    received: latencies.length,
    sendFailures: failures.length,
    loadLoad,
  };
}

// ------------------------------------------------------------------------------------------- table

function table(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const fmt = (value: number | undefined, digits = 0): string =>
  value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);

function render(rows: readonly Row[]): string {
  return table(
    rows.map((row) => {
      const bare = rows.find((r) => r.n === row.n && r.variant === 'bare');
      const ratio = (value: number | undefined, of: number | undefined): string =>
        row.variant === 'bare' || value === undefined || of === undefined || !Number.isFinite(value / of)
          ? ''
          : ` (${(value / of).toFixed(2)}×)`;
      const delta = (value: number, of: number | undefined): string =>
        row.variant === 'bare' || of === undefined || !Number.isFinite(value - of)
          ? ''
          : ` (${value - of >= 0 ? '+' : ''}${Math.round(value - of)})`;
      return [
        String(row.n),
        row.variant === 'bare' ? 'bare Baileys' : 'zapwire',
        `${row.rssPerInstanceKb}${ratio(row.rssPerInstanceKb, bare?.rssPerInstanceKb)}`,
        `${fmt(row.pssPerInstanceKb)}${ratio(row.pssPerInstanceKb, bare?.pssPerInstanceKb)}`,
        `${fmt(row.nodeRssPerInstanceKb)}${ratio(row.nodeRssPerInstanceKb, bare?.nodeRssPerInstanceKb)}`,
        String(row.rssMb),
        fmt(row.pairingSeconds),
        `${fmt(row.restartMs / 1000, 1)}${ratio(row.restartMs, bare?.restartMs)}${row.failedLogins ? ` (${row.failedLogins} failed logins)` : ''}`,
        row.variant === 'bare'
          ? 'all at once'
          : `${fmt(row.healthMs !== undefined ? row.healthMs / 1000 : undefined, 1)} / ${fmt(row.restoredMs !== undefined ? row.restoredMs / 1000 : undefined, 1)}`,
        `${row.logins.atOnce} / ${row.logins.perSecond}`,
        fmt(row.restartLoad, 1),
        `${fmt(row.loopP99Ms)}${ratio(row.loopP99Ms, bare?.loopP99Ms)}`,
        fmt(row.statusP99Ms),
        `${fmt(row.sendP99Ms)}${row.apiErrors ? ` (${row.apiErrors} err)` : ''}${row.apiSkipped ? ` (${row.apiSkipped} skipped)` : ''}`,
        `${fmt(row.inboundP50Ms)} / ${fmt(row.inboundP99Ms)}${delta(row.inboundP99Ms, bare?.inboundP99Ms)}`,
        `${row.received}/${row.sent}${row.sendFailures ? ` (${row.sendFailures} failed)` : ''}`,
        fmt(row.loadLoad, 1),
      ];
    }),
    [
      'N',
      'variant',
      'RSS KB/inst (×bare)',
      'PSS KB/inst',
      'node RSS KB/inst',
      'RSS MB',
      'pairing s',
      'restart→all open s (×bare)',
      '/health up / restored s',
      'logins at once / most in 1 s',
      'load',
      'loop p99 ms',
      'status p99 ms',
      'send p99 ms',
      'inbound→hook p50/p99 ms (Δp99)',
      'recv/sent',
      'load',
    ],
  );
}

// ------------------------------------------------------------------------------------------- main

export default async function benchScale(): Promise<void> {
  if (VARIANTS.includes('zapwire')) {
    const build = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], {
      cwd: root,
      stdio: 'inherit',
    });
    if (build.status !== 0) throw new Error('npm run build failed');
  }
  const rows: Row[] = [];
  const receiver = new Receiver();
  await receiver.start();
  try {
    for (const n of SIZES) {
      // A fresh sandbox for each N: its accounts and devices do not pile up across sizes.
      const sandbox = await startSandbox();
      try {
        const customers: string[] = [];
        for (let i = 0; i < CUSTOMERS; i++) customers.push(await newPhone(sandbox));
        for (const variant of VARIANTS) {
          const t0 = Date.now();
          console.log(`  N=${n} ${variant} … (load ${load1()})`);
          const row =
            variant === 'bare'
              ? await runBare(sandbox, receiver, n, customers)
              : await runZapwire(sandbox, receiver, n, customers);
          rows.push(row);
          console.log(
            `  N=${n} ${variant}: ${Math.round((Date.now() - t0) / 1000)} s ${JSON.stringify(row)}`,
          );
        }
      } finally {
        sandbox.child.kill('SIGTERM');
        await waitForExit(sandbox.child, 10_000);
      }
    }
  } finally {
    await receiver.close();
  }
  console.log('');
  console.log(render(rows));
  console.log(
    `\nper instance = (process tree with N+1 paired − with 1 paired) / N, after ${SETTLE_MS / 1000} s idle and a full gc in the node process.` +
      '\nrestart: bare = every socket re-logging in at once; zapwire = new process spawned → the sandbox counts N+1 devices online.' +
      `\nload: ${RATE} msg/s to every account for ${SECONDS} s; zapwire also answers ${STATUS_PER_SECOND} status and ${SEND_PER_SECOND} send/text requests a second.` +
      '\nloop p99: monitorEventLoopDelay at 10 ms resolution on both sides (an idle loop reads ~10 ms).' +
      '\nload = 1-minute load average at the end of the restart and of the load phase (2 cores, shared).',
  );
}
