/**
 * Several real zapwire processes on one PostgreSQL database, plus one WhatsApp sandbox process, for
 * cluster tests and benchmarks. Each node is `node dist/src/main.js` (built once, as `npm start` does)
 * with its own PORT, DATA_DIR, CLUSTER_NODE_ID and CLUSTER_ADVERTISE_URL, and the same database,
 * secrets and sandbox. Nodes can be killed (SIGKILL), stopped (SIGTERM), paused (SIGSTOP/SIGCONT) and
 * restarted on the same port and data directory.
 *
 * Every process is started in its own process group, and `close()` (and, as a last resort, the test
 * process's exit) SIGKILLs each whole group: nothing outlives the test, whatever state it failed in.
 */
import { SERVED_BY_HEADER } from '../../src/cluster/forwarding.ts';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from './postgres.ts';
import type { WebhookReceiver } from './webhook-receiver.ts';

export const CLUSTER_ADMIN_KEY = 'cluster-admin-key-0123456789abcdef';
export const CLUSTER_SECRET_FOR_TESTS = 'cluster-secret-for-tests-0123456789abcdef';
const SESSION_KEY = '22'.repeat(32);
const TOKEN_PEPPER = 'cluster-token-pepper-0123456789';

/** Process groups this test process started and has not reaped: killed on exit whatever happens. */
const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
});

function killGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Builds dist/ when a source is newer (what `npm start` does first); long on a busy machine. */
export function buildOnce(): void {
  execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { stdio: 'inherit' });
}

interface Spawned {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnGroup(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
  log: WriteStream,
): Spawned {
  const child = spawn(command, args, {
    cwd: process.cwd(),
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: one signal reaches the process and everything it started.
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  const pgid = child.pid;
  liveGroups.add(pgid);
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      // A group whose leader exited may still hold children: end them too.
      killGroup(pgid, 'SIGKILL');
      liveGroups.delete(pgid);
      resolve({ code, signal });
    }),
  );
  return { child, exited };
}

// ---- the sandbox ------------------------------------------------------------------------------------

export interface DeviceConnections {
  readonly device: string;
  readonly online: boolean;
  readonly logins: number;
  readonly replaced: number;
}

export class SandboxProcess {
  private constructor(
    private readonly spawned: Spawned,
    readonly controlUrl: string,
    readonly wsUrl: string,
    readonly rootPublicKeyBase64: string,
  ) {}

  static async start(logFile: string): Promise<SandboxProcess> {
    const log = createWriteStream(logFile);
    const spawned = spawnGroup(
      process.execPath,
      ['--import', 'tsx', 'packages/sandbox/src/main.ts', '--port', '0', '--small-prekeys', '--quiet'],
      {},
      log,
    );
    let out = '';
    spawned.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ws = /WA_WEBSOCKET_URL=(\S+)/.exec(out)?.[1];
      const key = /WA_NOISE_ROOT_PUBLIC_KEY=(\S+)/.exec(out)?.[1];
      const control = /Control API: (\S+)\/control/.exec(out)?.[1];
      if (ws && key && control) return new SandboxProcess(spawned, control, ws, key);
      if (spawned.child.exitCode !== null || Date.now() > deadline) {
        killGroup(spawned.child.pid!, 'SIGKILL');
        throw new Error(`the sandbox did not start (see ${logFile}):\n${out}`);
      }
      await sleep(50);
    }
  }

  async control<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.controlUrl}/control${path}`, {
      method,
      ...(body !== undefined
        ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
        : {}),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`sandbox ${method} ${path}: ${response.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  createAccount(phoneNumber: string, name: string): Promise<unknown> {
    return this.control('POST', '/accounts', { phoneNumber, name });
  }

  scanQr(phoneNumber: string, qr: string): Promise<unknown> {
    return this.control('POST', `/accounts/${phoneNumber}/scan-qr`, { qr });
  }

  /** The phone `from` sends `text` to `to`; resolves with the WhatsApp message id. */
  async sendText(from: string, to: string, text: string): Promise<string> {
    const sent = await this.control<{ id: string }>('POST', `/accounts/${from}/messages`, { to, text });
    return sent.id;
  }

  deviceConnections(): Promise<DeviceConnections[]> {
    return this.control('GET', '/devices/connections');
  }

  async close(): Promise<void> {
    const pid = this.spawned.child.pid!;
    killGroup(pid, 'SIGKILL');
    await this.spawned.exited;
  }
}

// ---- the nodes -------------------------------------------------------------------------------------

export interface NodeOptions {
  /** Extra environment for every node (CLUSTER_LEASE_MS, LOG_LEVEL...). */
  readonly env?: Record<string, string>;
}

export class ClusterNodeProcess {
  private spawned: Spawned | undefined;
  /** When the current process started (ms since the epoch). */
  startedAt = 0;

  constructor(
    readonly nodeId: string,
    readonly port: number,
    readonly dataDir: string,
    private readonly env: Record<string, string>,
    readonly logFile: string,
    private readonly log: WriteStream,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.spawned?.child.pid;
  }

  get running(): boolean {
    return (
      this.spawned !== undefined &&
      this.spawned.child.exitCode === null &&
      this.spawned.child.signalCode === null
    );
  }

  /** Starts the process (again, on the same port and data directory) and waits for /health. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.running) throw new Error(`node ${this.nodeId} is running`);
    this.log.write(`\n---- ${new Date().toISOString()} start ${this.nodeId}\n`);
    this.startedAt = Date.now();
    this.spawned = spawnGroup(process.execPath, ['dist/src/main.js'], this.env, this.log);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const response = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2_000) });
        if (response.status < 500) return;
      } catch {
        // not listening yet
      }
      if (!this.running) throw new Error(`node ${this.nodeId} exited during start-up (see ${this.logFile})`);
      if (Date.now() > deadline) throw new Error(`node ${this.nodeId}: no /health within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Sends a signal to the node's process group (SIGSTOP/SIGCONT pause and resume it). */
  signal(signal: NodeJS.Signals): void {
    if (!this.spawned?.child.pid) throw new Error(`node ${this.nodeId} was never started`);
    this.log.write(`\n---- ${new Date().toISOString()} ${signal} ${this.nodeId}\n`);
    killGroup(this.spawned.child.pid, signal);
  }

  /** SIGKILL: the process dies with its sockets and leases as they are. Resolves once it is gone. */
  async kill(): Promise<void> {
    if (!this.running) return;
    const exited = this.spawned!.exited;
    this.signal('SIGKILL');
    await exited;
  }

  /** SIGTERM: a clean shutdown (hand-over). Resolves with the exit code; SIGKILLs after `timeoutMs`. */
  async terminate(timeoutMs = 30_000): Promise<number | null> {
    if (!this.running) return null;
    const exited = this.spawned!.exited;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    try {
      return (await exited).code;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The node's output so far (stdout and stderr of every run). */
  output(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  request<T = Record<string, unknown>>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options: NodeCallOptions = {},
  ): Promise<NodeAnswer<T>> {
    return callNode<T>(this.url, method, path, options);
  }
}

export interface NodeCallOptions {
  /** Default: the cluster's admin key. */
  readonly apikey?: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  readonly timeoutMs?: number;
}

export interface NodeAnswer<T> {
  readonly status: number;
  /** The parsed JSON answer, or its text when it is not JSON. */
  readonly body: T;
  /** Which node answered (x-zapwire-served-by). */
  readonly servedBy: string | null;
  readonly retryAfter: string | null;
}

/** One HTTP request to a node at `baseUrl`, with an API key and an optional JSON body. */
export async function callNode<T = Record<string, unknown>>(
  baseUrl: string,
  method: string,
  path: string,
  options: NodeCallOptions = {},
): Promise<NodeAnswer<T>> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      apikey: options.apikey ?? CLUSTER_ADMIN_KEY,
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    signal: AbortSignal.timeout(options.timeoutMs ?? 40_000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text
  }
  return {
    status: response.status,
    body: body as T,
    servedBy: response.headers.get(SERVED_BY_HEADER),
    retryAfter: response.headers.get('retry-after'),
  };
}

export interface ClusterOptions extends NodeOptions {
  readonly nodes: number;
}

export interface TestCluster {
  readonly nodes: readonly ClusterNodeProcess[];
  readonly sandbox: SandboxProcess;
  readonly database: TestDatabase;
  /** Where every process writes its output (kept when a test fails, removed by close). */
  readonly logDir: string;
  /** The running nodes, round-robin: each call the next one. */
  next(): ClusterNodeProcess;
  /** Kills every process (whole process groups) and drops the database. */
  close(options?: { keepLogs?: boolean }): Promise<void>;
}

/**
 * Starts the sandbox, creates a fresh database and starts `nodes` nodes on it one after the other (the
 * first one migrates the database). Call `buildOnce()` first (in a beforeAll with a long timeout).
 */
export async function startCluster(options: ClusterOptions): Promise<TestCluster> {
  const logDir = mkdtempSync(join(tmpdir(), 'zw-cluster-'));
  const sandbox = await SandboxProcess.start(join(logDir, 'sandbox.log'));
  let database: TestDatabase | undefined;
  const nodes: ClusterNodeProcess[] = [];
  const close = async (closeOptions: { keepLogs?: boolean } = {}): Promise<void> => {
    await Promise.all(nodes.map((node) => node.kill().catch(() => undefined)));
    await sandbox.close().catch(() => undefined);
    await database?.drop().catch(() => undefined);
    for (const node of nodes) rmSync(node.dataDir, { recursive: true, force: true });
    if (!closeOptions.keepLogs) rmSync(logDir, { recursive: true, force: true });
  };
  try {
    database = await createTestDatabase();
    for (let i = 1; i <= options.nodes; i++) {
      const nodeId = `node-${i}`;
      const port = await freePort();
      const dataDir = mkdtempSync(join(tmpdir(), `zw-${nodeId}-`));
      const logFile = join(logDir, `${nodeId}.log`);
      const node = new ClusterNodeProcess(
        nodeId,
        port,
        dataDir,
        {
          HOST: '127.0.0.1',
          PORT: String(port),
          DATA_DIR: dataDir,
          DATABASE_URL: database.url,
          GLOBAL_API_KEY: CLUSTER_ADMIN_KEY,
          SESSION_ENCRYPTION_KEY: SESSION_KEY,
          TOKEN_PEPPER,
          CLUSTER_ENABLED: 'true',
          CLUSTER_SECRET: CLUSTER_SECRET_FOR_TESTS,
          CLUSTER_NODE_ID: nodeId,
          CLUSTER_ADVERTISE_URL: `http://127.0.0.1:${port}`,
          WA_WEBSOCKET_URL: sandbox.wsUrl,
          WA_NOISE_ROOT_PUBLIC_KEY: sandbox.rootPublicKeyBase64,
          LOG_LEVEL: 'warn',
          RECONNECT_BASE_MS: '500',
          RECONNECT_MAX_MS: '5000',
          RECONNECT_RATE_LIMIT_MS: '0',
          WEBHOOK_BACKOFF_BASE_MS: '100',
          WEBHOOK_PROBE_MAX_MS: '2000',
          ...options.env,
        },
        logFile,
        createWriteStream(logFile, { flags: 'a' }),
      );
      nodes.push(node);
      await node.start();
    }
  } catch (error) {
    await close({ keepLogs: true });
    throw error;
  }
  let turn = 0;
  return {
    nodes,
    sandbox,
    database: database,
    logDir,
    next() {
      const running = nodes.filter((node) => node.running);
      if (running.length === 0) throw new Error('no node is running');
      return running[turn++ % running.length]!;
    },
    close,
  };
}

// ---- scenarios shared by the cluster tests and `npm run bench -- cluster` ---------------------------

export interface PairedInstance {
  readonly id: string;
  readonly name: string;
  readonly token: string;
  /** The simulated phone the instance is linked to. */
  readonly phone: string;
}

/** Thrown by a probe to stop polling at once. */
class GiveUp extends Error {}

async function poll<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      lastError = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

/**
 * Creates `count` instances and pairs each with its own simulated phone by QR, `concurrency` at a time,
 * every request to the next running node (round-robin). `webhookUrl` receives their MESSAGE events.
 */
export async function pairInstances(
  cluster: TestCluster,
  count: number,
  options: { webhookUrl?: string; concurrency?: number; prefix?: string } = {},
): Promise<PairedInstance[]> {
  const prefix = options.prefix ?? 'c';
  const paired: PairedInstance[] = [];
  let nextIndex = 0;
  const pairOne = async (i: number): Promise<PairedInstance> => {
    const name = `${prefix}${String(i).padStart(3, '0')}`;
    const phone = `55119${String(70_000_000 + i).padStart(8, '0')}`;
    const token = `token-${name}-0123456789`;
    await cluster.sandbox.createAccount(phone, `Phone ${name}`);
    const created = await cluster.next().request<{ id: string }>('POST', '/instance/create', {
      body: {
        name,
        token,
        ...(options.webhookUrl ? { webhookUrl: options.webhookUrl, subscribe: ['MESSAGE'] } : {}),
      },
    });
    if (created.status !== 201)
      throw new Error(`create ${name}: ${created.status} ${JSON.stringify(created.body)}`);
    // Placement may move an instance that is still pairing to another node, which ends that attempt
    // (the new owner does not show a QR nobody asked it for): connect again, up to three times.
    for (let attempt = 1; ; attempt++) {
      try {
        await poll(`connect ${name}`, 30_000, async () => {
          const answer = await cluster
            .next()
            .request('POST', '/instance/connect', { apikey: token, body: {} });
          return answer.status === 200 ? true : undefined;
        });
        const code = await poll(`QR of ${name}`, 30_000, async () => {
          const answer = await cluster
            .next()
            .request<{ code?: string }>('GET', '/instance/qr', { apikey: token });
          if (answer.status === 200) return answer.body.code;
          const status = await cluster
            .next()
            .request<{ state?: string }>('GET', '/instance/status', { apikey: token });
          if (status.body.state === 'disconnected')
            throw new GiveUp(`${name} was disconnected while pairing`);
          return undefined;
        });
        await cluster.sandbox.scanQr(phone, code);
        await poll(`${name} open`, 30_000, async () => {
          const answer = await cluster
            .next()
            .request<{ state?: string }>('GET', '/instance/status', { apikey: token });
          if (answer.body.state === 'disconnected')
            throw new GiveUp(`${name} was disconnected while pairing`);
          return answer.body.state === 'open' ? true : undefined;
        });
        break;
      } catch (error) {
        if (attempt >= 3) throw error;
      }
    }
    return { id: created.body.id, name, token, phone };
  };
  const worker = async (): Promise<void> => {
    while (nextIndex < count) {
      const i = nextIndex++;
      paired.push(await pairOne(i));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 3) }, worker));
  return paired.sort((a, b) => a.name.localeCompare(b.name));
}

/** The live owner of every instance, from the leases in the shared database. */
export async function ownersOf(cluster: TestCluster): Promise<Map<string, string>> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: cluster.database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ instance_id: string; node_id: string }>(
      `SELECT l.instance_id, l.node_id FROM zw_instance_leases l
         JOIN zw_cluster_nodes n ON n.node_id = l.node_id AND n.incarnation = l.incarnation
        WHERE n.lease_until > now()`,
    );
    return new Map(rows.map((r) => [r.instance_id, r.node_id]));
  } finally {
    await client.end();
  }
}

/** The sandbox's connection counts of each instance's device (by the phone it is linked to). */
export async function devicesOf(
  cluster: TestCluster,
  instances: readonly PairedInstance[],
): Promise<Map<string, DeviceConnections>> {
  const devices = await cluster.sandbox.deviceConnections();
  const out = new Map<string, DeviceConnections>();
  for (const instance of instances) {
    const device = devices.find((d) => d.device.startsWith(`${instance.phone}:`));
    if (device) out.set(instance.id, device);
  }
  return out;
}

/**
 * Resolves, for each instance, the milliseconds from `since` until its device was online again with
 * more logins than `loginsBefore` says (a new socket, from whichever node now owns it).
 */
export async function waitReopened(
  cluster: TestCluster,
  instances: readonly PairedInstance[],
  loginsBefore: ReadonlyMap<string, number>,
  since: number,
  timeoutMs: number,
): Promise<Map<string, number>> {
  const reopened = new Map<string, number>();
  await poll(
    `${instances.length} instance(s) open again`,
    timeoutMs,
    async () => {
      const devices = await devicesOf(cluster, instances);
      const now = Date.now();
      for (const instance of instances) {
        const device = devices.get(instance.id);
        if (
          !reopened.has(instance.id) &&
          device?.online &&
          device.logins > (loginsBefore.get(instance.id) ?? 0)
        )
          reopened.set(instance.id, now - since);
      }
      return reopened.size === instances.length ? true : undefined;
    },
    100,
  );
  return reopened;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// ---- the webhook's sender across failovers ----------------------------------------------------------

/** The node whose process holds the `sink-webhook` lease (its owner is "<host>:<pid>/<random>"). */
export async function webhookSender(cluster: TestCluster): Promise<ClusterNodeProcess | undefined> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: cluster.database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ owner: string | null }>(
      `SELECT owner FROM es_subscriptions WHERE subscription_id = 'sink-webhook' AND lease_until > now()`,
    );
    const pid = Number(/:(\d+)\//.exec(rows[0]?.owner ?? '')?.[1]);
    return cluster.nodes.find((n) => n.running && n.pid === pid);
  } finally {
    await client.end();
  }
}

/**
 * What the receiver saw from `from` on: the longest silence (from `from` to the first arrival, or between
 * two arrivals), and the requests whose event id had arrived before.
 */
export function webhookFigures(
  receiver: Pick<WebhookReceiver, 'requests'>,
  from: number,
  until: number,
): { gapMs: number; repeats: number } {
  const seen = new Set<string>();
  let repeats = 0;
  let last = from;
  let gapMs = 0;
  for (const request of receiver.requests) {
    const ids = String(request.headers['x-zapwire-event-id'] ?? '').split(',');
    if (request.receivedAt >= from && request.receivedAt <= until) {
      if (ids.some((id) => seen.has(id))) repeats += 1;
      gapMs = Math.max(gapMs, request.receivedAt - last);
      last = request.receivedAt;
    }
    for (const id of ids) seen.add(id);
  }
  return { gapMs, repeats };
}
