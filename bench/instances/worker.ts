/**
 * One measured run of the instances bench, in a fresh process (started by ./index.ts with
 * `node --expose-gc --import tsx`), so that memory figures belong to one variant only:
 *
 *   baileys  bare Baileys sockets with in-memory auth (the baseline)
 *   zapwire  the whole app (PGlite store, projections, actors, the Baileys adapter with its sealed auth store)
 *
 * Phones are simulated by the sandbox in the parent process, reached through its loopback control API
 * (POST /phones, POST /scan). Prints one JSON line `RESULT {...}` at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import makeWASocket, { type AuthenticationState } from '@whiskeysockets/baileys';
import { loadConfig } from '../../src/config.ts';
import { startZapwire, type ConnectorFactory, type Zapwire } from '../../src/main.ts';
import { buildBaileysConnector, type BaileysConnector } from '../../src/whatsapp/baileys/index.ts';
import { silenceLibsignalConsole } from '../../src/whatsapp/baileys/quiet.ts';
import { trustNoiseRoot } from '../../src/whatsapp/baileys/server.ts';
import { memoryAuth } from '../support/memory-auth.ts';

export interface WorkerResult {
  readonly variant: 'baileys' | 'zapwire';
  readonly n: number;
  readonly rssPerInstanceKb: number;
  readonly heapPerInstanceKb: number;
  readonly externalPerInstanceKb: number;
  readonly rssBeforeMb: number;
  readonly rssAfterMb: number;
  readonly pairingSeconds: number;
  /** Connect → open of a paired instance (re-login), one at a time. */
  readonly openP50Ms: number;
  readonly openP99Ms: number;
  /** From restart (zapwire: a new app on the same data; baileys: all sockets re-opened) to all open. */
  readonly restartAllOpenMs: number;
}

const [variant, nArg, controlUrl, wsUrl, rootKey] = process.argv.slice(2);
const N = Number(nArg);
const CONCURRENCY = 4; // RESTORE_CONCURRENCY's default: both variants restart at the same pace
const silent = pino({ level: 'silent' });

async function control<T>(path: string, body: unknown): Promise<T> {
  const response = await fetch(`${controlUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`control ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

const newPhone = () => control<{ phone: string }>('/phones', {}).then((r) => r.phone);
const scan = (phone: string, qr: string) => control<{ ok: true }>('/scan', { phone, qr });

async function settle(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  return process.memoryUsage();
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function pool<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await run(items[next++]!);
    }),
  );
}

// ---------------------------------------------------------------------------------- bare Baileys

type Sock = ReturnType<typeof makeWASocket>;

function bareSocket(
  auth: AuthenticationState,
  onQr?: (qr: string) => void,
): { sock: Sock; outcome: Promise<'open' | number> } {
  const sock = makeWASocket({
    auth,
    logger: silent,
    waWebSocketUrl: wsUrl,
    markOnlineOnConnect: false,
    emitOwnEvents: false,
    syncFullHistory: false,
    getMessage: async () => undefined,
    connectTimeoutMs: 60_000,
  });
  const outcome = new Promise<'open' | number>((resolve) => {
    sock.ev.on('connection.update', (update) => {
      if (update.qr && onQr) onQr(update.qr);
      if (update.connection === 'open') resolve('open');
      if (update.connection === 'close') {
        const error = update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined;
        resolve(error?.output?.statusCode ?? -1);
      }
    });
  });
  return { sock, outcome };
}

async function pairBare(): Promise<{ auth: AuthenticationState; sock: Sock }> {
  const phone = await newPhone();
  const auth = memoryAuth();
  let scanned = false;
  const first = bareSocket(auth, (qr) => {
    if (scanned) return;
    scanned = true;
    void scan(phone, qr);
  });
  const code = await first.outcome;
  if (code !== 515) throw new Error(`pairing ended with ${code}, not 515`);
  const second = bareSocket(auth);
  const result = await second.outcome;
  if (result !== 'open') throw new Error(`login after pairing ended with ${result}`);
  return { auth, sock: second.sock };
}

async function runBaileys(): Promise<WorkerResult> {
  silenceLibsignalConsole();
  trustNoiseRoot(Buffer.from(rootKey!, 'base64'));
  const warm = await pairBare(); // loads the modules, the WASM bridge, the protobuf statics
  const before = await settle();
  const started = Date.now();
  const paired: Array<{ auth: AuthenticationState; sock: Sock }> = [];
  for (let i = 0; i < N; i++) paired.push(await pairBare());
  const pairingSeconds = (Date.now() - started) / 1000;
  const after = await settle();

  // Re-login latency, one at a time.
  const latencies: number[] = [];
  for (const entry of paired) {
    entry.sock.end(undefined);
    const t0 = performance.now();
    const next = bareSocket(entry.auth);
    if ((await next.outcome) !== 'open') throw new Error('re-login failed');
    latencies.push(performance.now() - t0);
    entry.sock = next.sock;
  }
  // Restart: all sockets down, then all back at the runtime's restore pace.
  for (const entry of paired) entry.sock.end(undefined);
  const t0 = performance.now();
  await pool(paired, CONCURRENCY, async (entry) => {
    const next = bareSocket(entry.auth);
    if ((await next.outcome) !== 'open') throw new Error('restart login failed');
    entry.sock = next.sock;
  });
  const restartAllOpenMs = performance.now() - t0;
  for (const entry of [...paired, warm]) entry.sock.end(undefined);
  return result('baileys', before, after, pairingSeconds, latencies, restartAllOpenMs);
}

// ---------------------------------------------------------------------------------- zapwire

const ADMIN = 'bench-admin-key-0123456789abcdef';

interface Timings {
  readonly started: Map<string, number>;
  readonly opened: number[];
  openCount: number;
}

function instrumented(timings: Timings, holder: { connector?: BaileysConnector }): ConnectorFactory {
  return async (deps) => {
    const connector = await buildBaileysConnector(deps, {
      baileysLogLevel: 'silent',
      connectTimeoutMs: 60_000,
    });
    holder.connector = connector;
    const open = connector.open.bind(connector);
    connector.open = (options, listener) => {
      timings.started.set(options.instanceId, performance.now());
      return open(options, (signal) => {
        if (signal.type === 'opened') {
          const t0 = timings.started.get(options.instanceId);
          if (t0 !== undefined) timings.opened.push(performance.now() - t0);
          timings.openCount += 1;
        }
        listener(signal);
      });
    };
    return connector;
  };
}

async function startApp(dataDir: string, timings: Timings): Promise<Zapwire> {
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    WA_WEBSOCKET_URL: wsUrl,
    WA_NOISE_ROOT_PUBLIC_KEY: rootKey,
    RECONNECT_RATE_LIMIT_MS: '0',
    RESTORE_CONCURRENCY: String(CONCURRENCY),
  });
  return startZapwire({ config, logger: silent, connector: instrumented(timings, {}), listen: false });
}

async function api<T = Record<string, unknown>>(
  app: Zapwire,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const response = await app.app.inject({
    method,
    url,
    headers: { apikey: ADMIN, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
  return { status: response.statusCode, body: response.json() as T };
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function pairZapwire(app: Zapwire, name: string): Promise<void> {
  const phone = await newPhone();
  const created = await api(app, 'POST', '/instance/create', { name });
  if (created.status !== 201) throw new Error(`create: ${JSON.stringify(created.body)}`);
  await api(app, 'POST', '/instance/connect', { instanceName: name });
  const qr = await until(`${name} QR`, async () => {
    const reply = await api<{ code: string }>(app, 'GET', `/instance/qr?instanceName=${name}`);
    return reply.status === 200 ? reply.body.code : undefined;
  });
  await scan(phone, qr);
  await until(`${name} open`, async () => {
    const reply = await api<{ state: string }>(app, 'GET', `/instance/status?instanceName=${name}`);
    return reply.body.state === 'open' ? true : undefined;
  });
}

async function runZapwire(): Promise<WorkerResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-bench-'));
  const timings: Timings = { started: new Map(), opened: [], openCount: 0 };
  try {
    let app = await startApp(dataDir, timings);
    await pairZapwire(app, 'warm');
    const before = await settle();
    const started = Date.now();
    for (let i = 0; i < N; i++) await pairZapwire(app, `bench${i}`);
    const pairingSeconds = (Date.now() - started) / 1000;
    const after = await settle();

    // Re-login latency, one at a time (adapter open() → opened; the HTTP path adds its own read-your-writes).
    timings.opened.length = 0;
    for (let i = 0; i < N; i++) {
      const name = `bench${i}`;
      await api(app, 'POST', '/instance/disconnect', { instanceName: name });
      await api(app, 'POST', '/instance/connect', { instanceName: name });
      await until(`${name} reopened`, async () => {
        const reply = await api<{ state: string }>(app, 'GET', `/instance/status?instanceName=${name}`);
        return reply.body.state === 'open' ? true : undefined;
      });
    }
    const latencies = [...timings.opened];

    // Restart: stop the app (live instances record a shutdown), start a new one on the same data.
    await app.stop();
    timings.openCount = 0;
    const t0 = performance.now();
    app = await startApp(dataDir, timings);
    await until(
      'all open after restart',
      async () => (timings.openCount >= N + 1 ? true : undefined),
      300_000,
    );
    const restartAllOpenMs = performance.now() - t0;
    await app.stop();
    return result('zapwire', before, after, pairingSeconds, latencies, restartAllOpenMs);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function result(
  which: WorkerResult['variant'],
  before: NodeJS.MemoryUsage,
  after: NodeJS.MemoryUsage,
  pairingSeconds: number,
  latencies: number[],
  restartAllOpenMs: number,
): WorkerResult {
  const per = (a: number, b: number) => Math.round((b - a) / N / 1024);
  return {
    variant: which,
    n: N,
    rssPerInstanceKb: per(before.rss, after.rss),
    heapPerInstanceKb: per(before.heapUsed, after.heapUsed),
    externalPerInstanceKb: per(before.external, after.external),
    rssBeforeMb: Math.round(before.rss / 1024 / 1024),
    rssAfterMb: Math.round(after.rss / 1024 / 1024),
    pairingSeconds: Math.round(pairingSeconds * 10) / 10,
    openP50Ms: Math.round(percentile(latencies, 50)),
    openP99Ms: Math.round(percentile(latencies, 99)),
    restartAllOpenMs: Math.round(restartAllOpenMs),
  };
}

const run = variant === 'zapwire' ? runZapwire : runBaileys;
run().then(
  (out) => {
    process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
    process.exit(0);
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
