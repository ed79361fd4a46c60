/**
 * Send bench (`npm run bench -- send`): POST /send/text through the whole app (the outbox: SendRequested
 * recorded, Baileys' send, WhatsApp's ack waited for, SendSent and MessageSent recorded, then the answer),
 * beside bare Baileys `sendMessage` against the same sandbox in the same run.
 *
 *   bare      bench/send/bare.ts: one Baileys socket (in-memory auth), `sendMessage` and nothing else
 *   zapwire   `node dist/src/main.js` with `npm start`'s node flags (built first when stale), on the default
 *             store (its own embedded PostgreSQL, a fresh DATA_DIR), or on a fresh database of the server
 *             BENCH_DATABASE_URL names; one instance linked by QR through the sandbox, pacing off (the default)
 *
 * Latency: one send at a time, call → answer (bare: `sendMessage` resolved; zapwire: the HTTP 200), p50 and
 * p99 over BENCH_SEND_N sends (200). Throughput: BENCH_SEND_M sends (1000) with BENCH_SEND_WINDOW (32) in
 * flight, to BENCH_SEND_RECIPIENTS recipients (8) round-robin (one recipient's sends go in order: the
 * outbox writes the next once the one before is written). BENCH_SEND_ROUNDS (2) rounds, bare and zapwire alternating; medians.
 * Targets (issue 27): zapwire's p50/p99 within bare + 10 ms; zapwire's throughput ≥ 0.8 × bare.
 *
 * BENCH_SEND_CPU_PROF=<dir> has each zapwire process write a V8 CPU profile there.
 * BENCH_SEND_COMPARE_ROOT=<a built checkout of another version> adds that version's `dist/src/main.js` as a
 * third path, on a store of its own (e.g. the commit before the outbox, which sent directly).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Agent, fetch as undiciFetch } from 'undici';
import { freePort, serverEnv, START_NODE_FLAGS } from '../support/server-env.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const env = process.env;
const N = Number(env['BENCH_SEND_N'] ?? 200);
const M = Number(env['BENCH_SEND_M'] ?? 1000);
const WINDOW = Number(env['BENCH_SEND_WINDOW'] ?? 32);
const RECIPIENTS = Number(env['BENCH_SEND_RECIPIENTS'] ?? 8);
const ROUNDS = Math.max(1, Number(env['BENCH_SEND_ROUNDS'] ?? 2));
/** A PostgreSQL server to use instead of the default store (each zapwire gets a fresh database on it). */
const SERVER_URL = env['BENCH_DATABASE_URL'];
/** A directory: the zapwire processes write a V8 CPU profile there. */
const CPU_PROFILE_DIR = env['BENCH_SEND_CPU_PROF'];
const ADMIN_KEY = 'bench-send-admin-key-0123456789';
const COMPARE_ROOT = env['BENCH_SEND_COMPARE_ROOT'];

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

async function call<T>(method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as T };
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

let serial = 0;
async function newPhone(sandbox: Sandbox): Promise<string> {
  serial += 1;
  const phoneNumber = `5531${String(60_000_000 + serial)}`;
  const reply = await call<{ phoneNumber: string }>('POST', `${sandbox.controlUrl}/control/accounts`, {
    phoneNumber,
  });
  if (reply.status >= 300) throw new Error(`new phone: ${JSON.stringify(reply.body)}`);
  return reply.body.phoneNumber;
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

// ------------------------------------------------------------------------------------------- bare

interface Sender {
  latency(to: string, n: number, prefix: string): Promise<number[]>;
  throughput(recipients: readonly string[], m: number, window: number, prefix: string): Promise<number>;
  stop(): Promise<void>;
}

async function startBare(sandbox: Sandbox, phone: string): Promise<Sender> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(here, 'bare.ts'),
      sandbox.wsUrl,
      sandbox.rootPublicKeyBase64,
      sandbox.controlUrl,
      phone,
    ],
    { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const answers: Array<(line: string) => void> = [];
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  lines.on('line', (line) => {
    if (line === 'READY') ready();
    else answers.shift()?.(line);
  });
  child.once('exit', (code) => {
    if (code !== 0) process.stderr.write(`bare worker exited with ${code}\n`);
  });
  await isReady;
  const ask = (command: object): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      answers.push((line) => resolve(JSON.parse(line) as Record<string, unknown>));
      child.stdin!.write(`${JSON.stringify(command)}\n`);
    });
  return {
    async latency(to, n, prefix) {
      return (await ask({ op: 'latency', to, n, prefix }))['ms'] as number[];
    },
    async throughput(recipients, m, window, prefix) {
      // The bare socket sends to one recipient per command: split the run so the recipients alternate.
      const per = Math.ceil(m / recipients.length);
      const started = performance.now();
      await Promise.all(
        recipients.map((to, r) =>
          ask({
            op: 'throughput',
            to,
            n: per,
            window: Math.max(1, Math.round(window / recipients.length)),
            prefix: `${prefix}${r}-`,
          }),
        ),
      );
      return performance.now() - started;
    },
    async stop() {
      child.stdin!.end();
      await waitForExit(child, 5_000);
    },
  };
}

// ------------------------------------------------------------------------------------------- zapwire

async function freshDatabase(serverUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `zw_bench_send_${randomBytes(5).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function startZapwire(sandbox: Sandbox, phone: string, appRoot = root): Promise<Sender> {
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-send-'));
  const database = SERVER_URL ? await freshDatabase(SERVER_URL) : undefined;
  const port = await freePort();
  const profile = CPU_PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROFILE_DIR] : [];
  const child = spawn(process.execPath, [...START_NODE_FLAGS, ...profile, 'dist/src/main.js'], {
    cwd: appRoot,
    env: serverEnv({
      port,
      dataDir,
      adminKey: ADMIN_KEY,
      ...(database ? { databaseUrl: database.url } : {}),
      extra: {
        WA_WEBSOCKET_URL: sandbox.wsUrl,
        WA_NOISE_ROOT_PUBLIC_KEY: sandbox.rootPublicKeyBase64,
        RATE_LIMIT_SEND_PER_MINUTE: '0',
        INSTANCE_EVENTS_PER_DAY: '0',
      },
    }),
    stdio: ['ignore', 'ignore', 'inherit'],
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
    await until('zapwire up', async () => ((await fetch(`${base}/health`)).ok ? true : undefined));
    const token = `tok-send-${randomBytes(6).toString('hex')}`;
    const created = await call(
      'POST',
      `${base}/instance/create`,
      { name: 'sendbench', token },
      { apikey: ADMIN_KEY },
    );
    if (created.status !== 201) throw new Error(`create: ${JSON.stringify(created.body)}`);
    await call('POST', `${base}/instance/connect`, {}, { apikey: token });
    const qr = await until('QR', async () => {
      const reply = await call<{ code?: string }>('GET', `${base}/instance/qr`, undefined, { apikey: token });
      return reply.status === 200 ? reply.body.code : undefined;
    });
    await call('POST', `${sandbox.controlUrl}/control/accounts/${phone}/scan-qr`, { qr });
    await until('open', async () => {
      const reply = await call<{ state?: string }>('GET', `${base}/instance/status`, undefined, {
        apikey: token,
      });
      return reply.body.state === 'open' ? true : undefined;
    });
    const pool = new Agent({ connections: WINDOW, keepAliveTimeout: 60_000 });
    let failures = 0;
    const sendOne = async (to: string, text: string): Promise<void> => {
      const response = await undiciFetch(`${base}/send/text`, {
        dispatcher: pool,
        method: 'POST',
        headers: { 'content-type': 'application/json', apikey: token },
        body: JSON.stringify({ number: to, text }),
      });
      await response.arrayBuffer();
      if (response.status !== 200) failures++;
    };
    return {
      async latency(to, n, prefix) {
        const ms: number[] = [];
        for (let i = 0; i < n; i++) {
          const started = performance.now();
          await sendOne(to, `${prefix}${i}`);
          ms.push(performance.now() - started);
        }
        if (failures > 0) throw new Error(`${failures} zapwire send(s) not answered 200`);
        return ms;
      },
      async throughput(recipients, m, window, prefix) {
        let next = 0;
        const started = performance.now();
        await Promise.all(
          Array.from({ length: window }, async () => {
            while (next < m) {
              const i = next++;
              await sendOne(recipients[i % recipients.length]!, `${prefix}${i}`);
            }
          }),
        );
        if (failures > 0) throw new Error(`${failures} zapwire send(s) not answered 200`);
        return performance.now() - started;
      },
      async stop() {
        await pool.close();
        await stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

// ------------------------------------------------------------------------------------------- run

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const median = (values: readonly number[]): number => percentile(values, 50);
const f1 = (n: number): string => n.toFixed(1);

type PathName = 'bare' | 'zapwire' | 'compare';

const LABELS: Record<PathName, string> = {
  bare: 'bare Baileys sendMessage',
  zapwire: 'zapwire POST /send/text (outbox, pacing off)',
  compare: `zapwire of ${COMPARE_ROOT ?? ''} POST /send/text`,
};

export default async function sendBench(): Promise<void> {
  // The app runs as `npm start` runs it: compiled, from dist/ (rebuilt only when a source is newer).
  const build = spawnSync(process.execPath, ['scripts/build.mjs', '--if-stale'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (build.status !== 0) throw new Error('npm run build failed');
  const sandbox = await startSandbox();
  const senders: Sender[] = [];
  try {
    const phones = [await newPhone(sandbox), await newPhone(sandbox), await newPhone(sandbox)];
    const recipients: string[] = [];
    for (let i = 0; i < RECIPIENTS; i++) recipients.push(`${await newPhone(sandbox)}@s.whatsapp.net`);
    const paths: Array<[PathName, Sender]> = [];
    paths.push(['bare', await startBare(sandbox, phones[0]!)]);
    paths.push(['zapwire', await startZapwire(sandbox, phones[1]!)]);
    if (COMPARE_ROOT) paths.push(['compare', await startZapwire(sandbox, phones[2]!, COMPARE_ROOT)]);
    senders.push(...paths.map(([, sender]) => sender));
    // Warm-up: Signal sessions with every recipient, JIT, connection pools.
    for (const [, sender] of paths) for (const to of recipients) await sender.latency(to, 5, 'warm-');
    const results = new Map<PathName, { p50: number[]; p99: number[]; rate: number[] }>(
      paths.map(([name]) => [name, { p50: [], p99: [], rate: [] }]),
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, sender] of paths) {
        const figures = results.get(name)!;
        const ms = await sender.latency(recipients[0]!, N, `lat-${round}-`);
        figures.p50.push(percentile(ms, 50));
        figures.p99.push(percentile(ms, 99));
        const elapsed = await sender.throughput(recipients, M, WINDOW, `thr-${round}-`);
        figures.rate.push((M / elapsed) * 1000);
      }
    }
    const medians = new Map(
      [...results].map(([name, r]) => [
        name,
        { p50: median(r.p50), p99: median(r.p99), rate: median(r.rate) },
      ]),
    );
    const b = medians.get('bare')!;
    const z = medians.get('zapwire')!;
    console.log(
      `\nSend: ${N} sends one at a time (latency), then ${M} with ${WINDOW} in flight to ${RECIPIENTS} recipients (throughput); ${ROUNDS} round(s), medians`,
    );
    console.table([
      ...[...medians].map(([name, m]) => ({
        path: LABELS[name],
        'p50 ms': f1(m.p50),
        'p99 ms': f1(m.p99),
        'sends/s': f1(m.rate),
      })),
      {
        path: 'zapwire − bare / zapwire ÷ bare',
        'p50 ms': `+${f1(z.p50 - b.p50)}`,
        'p99 ms': `+${f1(z.p99 - b.p99)}`,
        'sends/s': `${(z.rate / b.rate).toFixed(2)}×`,
      },
    ]);
    console.log(
      `targets: latency within bare + 10 ms (p50 ${z.p50 - b.p50 <= 10 ? 'met' : 'MISSED'}, p99 ${z.p99 - b.p99 <= 10 ? 'met' : 'MISSED'}); throughput ≥ 0.8 × bare (${z.rate / b.rate >= 0.8 ? 'met' : 'MISSED'})`,
    );
    console.log('per round:', JSON.stringify(Object.fromEntries(results)));
  } finally {
    for (const sender of senders.reverse()) await sender.stop().catch(() => undefined);
    sandbox.child.kill('SIGKILL');
    await waitForExit(sandbox.child, 5_000);
  }
}
