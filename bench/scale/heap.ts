/**
 * Where an idle paired instance's memory goes: `node --expose-gc --import tsx bench/scale/heap.ts
 * <zapwire|bare> [N]` pairs one instance, takes a heap snapshot, pairs N more (default 50), takes another,
 * and prints the JS heap's growth per instance by constructor (self sizes, after gc), beside
 * process.memoryUsage() per instance. The sandbox runs in a child process. Not a registered bench: a
 * tool for finding what to bound (bench/scale/index.ts measures the result the way a user meets it).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import pino from 'pino';
import makeWASocket from '@whiskeysockets/baileys';
import { loadConfig } from '../../src/config.ts';
import { startZapwire } from '../../src/main.ts';
import { baileysConnectorFactory } from '../../src/whatsapp/baileys/index.ts';
import { silenceLibsignalConsole } from '../../src/whatsapp/baileys/quiet.ts';
import { trustNoiseRoot } from '../../src/whatsapp/baileys/server.ts';
import { memoryAuth } from '../support/memory-auth.ts';

const variant = process.argv[2] ?? 'zapwire';
const N = Number(process.argv[3] ?? 50);
const silent = pino({ level: 'silent' });
const ADMIN = 'bench-heap-admin-key-0123456789';

async function sandboxProcess(): Promise<{ wsUrl: string; key: string; control: string; stop: () => void }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'packages/sandbox/src/main.ts', '--port', '0', '--small-prekeys', '--quiet'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.setEncoding('utf8');
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (chunk: string) => (out += chunk).includes('Control API:') && resolve()),
  );
  return {
    wsUrl: /WA_WEBSOCKET_URL=(\S+)/.exec(out)![1]!,
    key: /WA_NOISE_ROOT_PUBLIC_KEY=(\S+)/.exec(out)![1]!,
    control: /Control API: (\S+)\/control/.exec(out)![1]!,
    stop: () => child.kill('SIGTERM'),
  };
}

let serial = 0;
async function newPhone(control: string): Promise<string> {
  serial += 1;
  const response = await fetch(`${control}/control/accounts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ phoneNumber: `5541${String(40_000_000 + serial)}` }),
  });
  return ((await response.json()) as { phoneNumber: string }).phoneNumber;
}

async function scan(control: string, phone: string, qr: string): Promise<void> {
  await fetch(`${control}/control/accounts/${phone}/scan-qr`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ qr }),
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function settle(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  for (let i = 0; i < 4; i++) {
    gc();
    await sleep(200);
  }
  return process.memoryUsage();
}

type Counts = Map<string, { size: number; count: number }>;

function snapshotCounts(): Counts {
  const file = writeHeapSnapshot(join(tmpdir(), `zapwire-heap-${process.pid}-${Date.now()}.heapsnapshot`));
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  rmSync(file);
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const counts: Counts = new Map();
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!]!;
    const name = snapshot.strings[snapshot.nodes[i + nameAt]!]!;
    const key =
      type === 'object' || type === 'closure'
        ? `${type}:${name.slice(0, 60)}`
        : type === 'hidden' || type === 'code' || type === 'array' || type === 'object shape'
          ? `${type}:${name.slice(0, 40)}`
          : type;
    const entry = counts.get(key) ?? { size: 0, count: 0 };
    entry.size += snapshot.nodes[i + sizeAt]!;
    entry.count += 1;
    counts.set(key, entry);
  }
  return counts;
}

function report(
  before: Counts,
  after: Counts,
  memBefore: NodeJS.MemoryUsage,
  memAfter: NodeJS.MemoryUsage,
): void {
  const rows = [...after]
    .map(([key, value]) => {
      const earlier = before.get(key) ?? { size: 0, count: 0 };
      return { key, size: (value.size - earlier.size) / N, count: (value.count - earlier.count) / N };
    })
    .sort((a, b) => b.size - a.size);
  const per = (a: number, b: number) => Math.round((b - a) / N / 1024);
  console.log(
    `${variant}, N=${N}: per instance RSS ${per(memBefore.rss, memAfter.rss)} KB, heap used ${per(memBefore.heapUsed, memAfter.heapUsed)} KB, external ${per(memBefore.external, memAfter.external)} KB, array buffers ${per(memBefore.arrayBuffers, memAfter.arrayBuffers)} KB`,
  );
  const total = rows.reduce((sum, row) => sum + row.size, 0);
  console.log(`heap snapshot self sizes: ${Math.round(total / 1024)} KB per instance; the largest:`);
  for (const row of rows.slice(0, 45))
    console.log(
      `${(row.size / 1024).toFixed(1).padStart(8)} KB ${row.count.toFixed(1).padStart(8)} × ${row.key}`,
    );
}

async function bare(sandbox: { wsUrl: string; control: string }): Promise<() => Promise<void>> {
  return async () => {
    const phone = await newPhone(sandbox.control);
    const auth = memoryAuth();
    const open = (onQr?: (qr: string) => void) => {
      const sock = makeWASocket({
        auth,
        logger: silent,
        waWebSocketUrl: sandbox.wsUrl,
        markOnlineOnConnect: false,
        syncFullHistory: false,
        getMessage: async () => undefined,
      });
      return new Promise<string | number>((resolve) =>
        sock.ev.on('connection.update', (update) => {
          if (update.qr && onQr) onQr(update.qr);
          if (update.connection === 'open') resolve('open');
          if (update.connection === 'close')
            resolve(
              (update.lastDisconnect?.error as { output?: { statusCode?: number } })?.output?.statusCode ??
                -1,
            );
        }),
      );
    };
    let scanned = false;
    await open((qr) => {
      if (!scanned) void scan(sandbox.control, phone, qr);
      scanned = true;
    });
    if ((await open()) !== 'open') throw new Error('bare login failed');
  };
}

async function zapwire(sandbox: {
  wsUrl: string;
  key: string;
  control: string;
}): Promise<{ pair: () => Promise<void>; stop: () => Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-heap-'));
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    WA_WEBSOCKET_URL: sandbox.wsUrl,
    WA_NOISE_ROOT_PUBLIC_KEY: sandbox.key,
    RECONNECT_RATE_LIMIT_MS: '0',
    ...(process.env['BENCH_DATABASE_URL'] ? { DATABASE_URL: process.env['BENCH_DATABASE_URL'] } : {}),
  });
  const app = await startZapwire({
    config,
    logger: silent,
    connector: baileysConnectorFactory({}),
    listen: false,
  });
  const api = async (method: 'GET' | 'POST', url: string, body?: unknown) => {
    const reply = await app.app.inject({
      method,
      url,
      headers: { apikey: ADMIN, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { payload: JSON.stringify(body) } : {}),
    });
    return reply.json() as Record<string, unknown>;
  };
  let i = 0;
  return {
    pair: async () => {
      const name = `heap${i++}`;
      const phone = await newPhone(sandbox.control);
      await api('POST', '/instance/create', { name, webhookUrl: 'http://127.0.0.1:9/hook' });
      await api('POST', '/instance/connect', { instanceName: name });
      let qr: string | undefined;
      while (!qr) {
        const reply = await api('GET', `/instance/qr?instanceName=${name}`);
        qr = typeof reply['code'] === 'string' ? reply['code'] : undefined;
        if (!qr) await sleep(20);
      }
      await scan(sandbox.control, phone, qr);
      while ((await api('GET', `/instance/status?instanceName=${name}`))['state'] !== 'open') await sleep(20);
    },
    stop: async () => {
      await app.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  silenceLibsignalConsole();
  const sandbox = await sandboxProcess();
  trustNoiseRoot(Buffer.from(sandbox.key, 'base64'));
  try {
    let pair: () => Promise<void>;
    let stop = async () => undefined as void;
    if (variant === 'bare') pair = await bare(sandbox);
    else ({ pair, stop } = await zapwire(sandbox));
    await pair();
    await sleep(3_000);
    const memBefore = await settle();
    const before = snapshotCounts();
    for (let i = 0; i < N; i++) await pair();
    await sleep(5_000);
    const memAfter = await settle();
    const after = snapshotCounts();
    report(before, after, memBefore, memAfter);
    await stop();
  } finally {
    sandbox.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
