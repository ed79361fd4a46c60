/**
 * Footprint benchmark (`npm run bench -- footprint`): what a user gets from `npm start` on the default
 * configuration (no DATABASE_URL: the embedded PostgreSQL), measured from outside the way an operator
 * would, on the compiled server (`node dist/src/main.js`, built first with `scripts/build.mjs --if-stale`):
 *
 * - start-up: first start on a fresh DATA_DIR (initdb included) and restart, from spawning the server to
 *   the first 200 on GET /health; SIGTERM → every process of the tree gone;
 * - idle memory of the whole process tree (node + the embedded PostgreSQL and all its processes, read from
 *   /proc after a settle period) with 0 instances and with N idle paired instances (created, connected and
 *   paired by scanning the QR through the WhatsApp sandbox, which runs in this process);
 * - per-instance memory, (tree with N − tree with 1) / (N − 1), beside bare Baileys sockets with in-memory
 *   auth measured the same way in the same run (./bare-baileys.ts). The baseline is one paired instance,
 *   not zero: zapwire loads Baileys with its first connection, and a 0-instance baseline would charge that
 *   one-off ~30 MB of code to every instance, while bare Baileys has it loaded before its first socket;
 * - restart with the N paired instances: SIGTERM, start again, until every instance reports `open`.
 *
 * The targets of issue #10 are printed beside the figures. BENCH_FOOTPRINT=npm-start measures the first ten
 * minutes through `npm install && npm start` instead (./npm-start.ts). Settings (environment):
 *   BENCH_INSTANCES          N (default 100, at least 2; of a list such as "50,200", the first)
 *   BENCH_SETTLE_MS          idle time before memory is read (default 10000)
 *   BENCH_SAMPLES            memory readings 1 s apart after settling; the median is kept (default 5)
 *   BENCH_STARTS             fresh-DATA_DIR first starts, each followed by a restart (default 3)
 *   BENCH_PAIR_CONCURRENCY   instances paired at once (default 4)
 *   BENCH_KEEP_DATA=1        keep the data directories (and the servers' logs) for inspection
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startBenchSandbox, type BenchSandbox } from '../instances/sandbox.ts';
import { byRole, treeMemory, type TreeMemory } from './process-tree.ts';
import {
  buildIfStale,
  freePort,
  killAllServersNow,
  removeServerData,
  root,
  startServer,
  stopAllServers,
  type RunningServer,
} from './server.ts';
import type { FromBareBaileys, ToBareBaileys } from './bare-baileys.ts';
import { PHASES, startPhases, type Phase } from './start-phases.ts';
import { benchNpmStart } from './npm-start.ts';

const here = dirname(fileURLToPath(import.meta.url));

function setting(name: string, fallback: number): number {
  const raw = process.env[name]?.split(',')[0]?.trim();
  const value = raw ? Number(raw) : fallback;
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`${name}="${process.env[name]}": expected a number`);
  return value;
}

const N = Math.max(2, Math.round(setting('BENCH_INSTANCES', 100)));
const SETTLE_MS = setting('BENCH_SETTLE_MS', 10_000);
const SAMPLES = Math.max(1, Math.round(setting('BENCH_SAMPLES', 5)));
const STARTS = Math.max(1, Math.round(setting('BENCH_STARTS', 3)));
const PAIR_CONCURRENCY = Math.max(1, Math.round(setting('BENCH_PAIR_CONCURRENCY', 4)));
const KEEP = process.env['BENCH_KEEP_DATA'] === '1';

const TARGET = {
  idleTreeMb: 200,
  perInstanceAboveBaileysKb: 300,
  firstStartMs: 10_000,
  restartMs: 3_000,
  /** Issue #10 item 3: SIGTERM drains and exits within 15 s. */
  stopMs: 15_000,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** Waits SETTLE_MS, then reads the tree SAMPLES times 1 s apart and keeps the median reading. */
async function idleMemory(
  pid: number,
  treeOf: (pid: number) => TreeMemory = treeMemory,
): Promise<TreeMemory> {
  await sleep(SETTLE_MS);
  const readings: TreeMemory[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    if (i > 0) await sleep(1_000);
    readings.push(treeOf(pid));
  }
  readings.sort((a, b) => a.rssKb - b.rssKb);
  return readings[Math.floor((readings.length - 1) / 2)]!;
}

/** The process alone, for bare Baileys (its tsx/esbuild helpers are not what is measured). */
function processOnly(pid: number): TreeMemory {
  const tree = treeMemory(pid);
  const own = tree.processes.filter((p) => p.pid === pid);
  return { processes: own, rssKb: own[0]?.rssKb ?? 0, pssKb: own[0]?.pssKb };
}

// ------------------------------------------------------------------------------------------ HTTP API

class Api {
  constructor(
    private readonly url: string,
    private readonly apikey: string,
  ) {}

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        apikey: this.apikey,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  /** Node's own view of its heap (prom-client's default metrics on /metrics), in MB. */
  async nodeHeap(): Promise<{ heapUsedMb: number; heapTotalMb: number; externalMb: number } | undefined> {
    try {
      const response = await fetch(`${this.url}/metrics`, {
        headers: { apikey: this.apikey },
        signal: AbortSignal.timeout(10_000),
      });
      const text = await response.text();
      const metric = (name: string): number => {
        const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
        return match ? Number(match[1]) / 1024 / 1024 : NaN;
      };
      return {
        heapUsedMb: metric('zapwire_nodejs_heap_size_used_bytes'),
        heapTotalMb: metric('zapwire_nodejs_heap_size_total_bytes'),
        externalMb: metric('zapwire_nodejs_external_memory_bytes'),
      };
    } catch {
      return undefined;
    }
  }
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function pairInstance(api: Api, sandbox: BenchSandbox, name: string): Promise<void> {
  const phone = await sandbox.newPhone();
  const created = await api.call('POST', '/instance/create', { name });
  if (created.status !== 201)
    throw new Error(`create ${name}: ${created.status} ${JSON.stringify(created.body)}`);
  const connected = await api.call('POST', '/instance/connect', { instanceName: name });
  if (connected.status >= 300)
    throw new Error(`connect ${name}: ${connected.status} ${JSON.stringify(connected.body)}`);
  const qr = await until(
    `${name}: QR`,
    async () => {
      const reply = await api.call<{ code?: string }>('GET', `/instance/qr?instanceName=${name}`);
      return reply.status === 200 ? reply.body.code : undefined;
    },
    120_000,
  );
  await sandbox.scan(phone, qr);
  await until(
    `${name}: open`,
    async () => {
      const reply = await api.call<{ state?: string }>('GET', `/instance/status?instanceName=${name}`);
      return reply.body.state === 'open' ? true : undefined;
    },
    120_000,
  );
}

/** Pairs instances fp<from> … fp<to − 1>; returns the seconds it took. */
async function pairInstances(api: Api, sandbox: BenchSandbox, from: number, to: number): Promise<number> {
  const t0 = performance.now();
  let next = from;
  await Promise.all(
    Array.from({ length: Math.min(PAIR_CONCURRENCY, to - from) }, async () => {
      while (next < to) await pairInstance(api, sandbox, `fp${next++}`);
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function openCount(api: Api): Promise<number> {
  const reply = await api.call<Array<{ state?: string }>>('GET', '/instance/all');
  return Array.isArray(reply.body) ? reply.body.filter((i) => i.state === 'open').length : 0;
}

// ------------------------------------------------------------------------------------------ bare Baileys

interface BareBaileys {
  readonly child: ChildProcess;
  next(type: FromBareBaileys['type']): Promise<FromBareBaileys>;
  send(message: ToBareBaileys): void;
}

function startBareBaileys(sandbox: BenchSandbox): BareBaileys {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(here, 'bare-baileys.ts'), sandbox.wsUrl, sandbox.rootPublicKeyBase64],
    { cwd: root, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const waiting = new Map<string, { resolve: (m: FromBareBaileys) => void; reject: (e: Error) => void }>();
  let failure: Error | undefined;
  const failAll = (error: Error): void => {
    failure ??= error;
    for (const waiter of waiting.values()) waiter.reject(failure);
    waiting.clear();
  };
  child.on('message', (message: FromBareBaileys) => {
    if (message.type === 'scan') {
      sandbox.scan(message.phone, message.qr).catch((error: unknown) => failAll(error as Error));
      return;
    }
    if (message.type === 'error') {
      failAll(new Error(`bare Baileys: ${message.message}`));
      return;
    }
    waiting.get(message.type)?.resolve(message);
    waiting.delete(message.type);
  });
  child.on('exit', (code) => failAll(new Error(`bare Baileys exited with ${code}: ${stderr}`)));
  return {
    child,
    next: (type) =>
      new Promise((resolve, reject) => {
        if (failure) reject(failure);
        else waiting.set(type, { resolve, reject });
      }),
    send: (message) => child.send(message),
  };
}

// ------------------------------------------------------------------------------------------ output

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

const s = (ms: number) => (ms / 1000).toFixed(2);
const mb = (kb: number | undefined) => (kb === undefined ? '–' : (kb / 1024).toFixed(1));
const met = (ok: boolean) => (ok ? 'yes' : 'NO');

function stats(values: readonly number[]): [string, string, string] {
  return [s(median(values)), s(Math.min(...values)), s(Math.max(...values))];
}

function postgresKb(tree: TreeMemory, field: 'rssKb' | 'pssKb'): number | undefined {
  const pg = tree.processes.filter((p) => p.title.includes('postgres'));
  const values = pg.map((p) => p[field]);
  return values.every((v) => v !== undefined) ? values.reduce<number>((a, v) => a + v!, 0) : undefined;
}

function nodeKb(tree: TreeMemory, pid: number): number {
  return tree.processes.find((p) => p.pid === pid)?.rssKb ?? 0;
}

// ------------------------------------------------------------------------------------------ the run

interface ZapwireMemory {
  readonly label: string;
  readonly tree: TreeMemory;
  readonly pid: number;
  readonly heap: Awaited<ReturnType<Api['nodeHeap']>>;
}

export default async function benchFootprint(): Promise<void> {
  if (process.env['BENCH_FOOTPRINT'] === 'npm-start') return benchNpmStart();
  const scratch = mkdtempSync(join(tmpdir(), 'zapwire-footprint-'));
  // As root the embedded PostgreSQL runs as a dedicated user, which must pass through (not list) this
  // directory to reach the DATA_DIRs inside it.
  chmodSync(scratch, 0o711);
  const loadBefore = loadavg();
  let sandbox: BenchSandbox | undefined;
  let bare: BareBaileys | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n  footprint: ${signal}: stopping the servers it started\n`);
    bare?.child.kill('SIGKILL');
    void stopAllServers().finally(() => {
      if (!KEEP) {
        removeServerData();
        rmSync(scratch, { recursive: true, force: true });
      }
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAllServersNow);
  let dataDirCount = 0;
  const freshDataDir = () => join(scratch, `data-${++dataDirCount}`);
  const logOf = (dataDir: string) => `${dataDir}.log`;
  const phases = {
    first: [] as Array<Map<Phase, number>>,
    restart: [] as Array<Map<Phase, number>>,
    withN: [] as Array<Map<Phase, number>>,
  };
  const start = async (dataDir: string, kind: keyof typeof phases): Promise<RunningServer> => {
    const server = await startServer({
      dataDir,
      port: await freePort(),
      waWebSocketUrl: sandbox!.wsUrl,
      waNoiseRootPublicKey: sandbox!.rootPublicKeyBase64,
      logFile: logOf(dataDir),
    });
    phases[kind].push(startPhases(dataDir, logOf(dataDir), server.spawnedAtEpochMs, server.healthyAtEpochMs));
    return server;
  };

  try {
    console.log(
      `  N=${N}, settle ${SETTLE_MS} ms, ${SAMPLES} readings, ${STARTS} fresh starts, pairing ${PAIR_CONCURRENCY} at a time; ` +
        `${cpus().length} cores, load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')}`,
    );
    const build = buildIfStale();
    const prestart = buildIfStale(); // nothing stale now: what every `npm start` pays before node starts
    sandbox = await startBenchSandbox();

    // Start-up: fresh DATA_DIR, then a restart on it.
    const firstStarts: number[] = [];
    const restarts: number[] = [];
    const firstCpu: number[] = [];
    const restartCpu: number[] = [];
    const stops: number[] = [];
    for (let i = 0; i < STARTS; i++) {
      const dataDir = freshDataDir();
      const first = await start(dataDir, 'first');
      firstStarts.push(first.healthyAfterMs);
      firstCpu.push(first.cpuMsToHealthy);
      stops.push(await first.stop());
      const again = await start(dataDir, 'restart');
      restarts.push(again.healthyAfterMs);
      restartCpu.push(again.cpuMsToHealthy);
      stops.push(await again.stop());
      console.log(
        `  start ${i + 1}/${STARTS}: first ${s(first.healthyAfterMs)} s, restart ${s(again.healthyAfterMs)} s`,
      );
    }

    // Memory: 0 instances, then N paired idle instances, then the same after a restart.
    const dataDir = freshDataDir();
    let server = await start(dataDir, 'first');
    firstStarts.push(server.healthyAfterMs);
    firstCpu.push(server.cpuMsToHealthy);
    const apikey = readFileSync(join(dataDir, 'global-api-key'), 'utf8').trim();
    let api = new Api(server.url, apikey);
    const memory: ZapwireMemory[] = [];
    const measure = async (label: string): Promise<void> => {
      const tree = await idleMemory(server.pid);
      memory.push({ label, tree, pid: server.pid, heap: await api.nodeHeap() });
      console.log(`  ${label}: tree RSS ${mb(tree.rssKb)} MB (${tree.processes.length} processes)`);
    };
    await measure('zapwire, 0 instances');
    let pairingSeconds = await pairInstances(api, sandbox, 0, 1);
    await measure('zapwire, 1 paired idle instance');
    pairingSeconds += await pairInstances(api, sandbox, 1, N);
    console.log(`  paired ${N} instances in ${pairingSeconds.toFixed(1)} s`);
    await measure(`zapwire, ${N} paired idle instances`);

    const stopWithN = await server.stop();
    stops.push(stopWithN);
    server = await start(dataDir, 'withN');
    api = new Api(server.url, apikey);
    const restartHealthWithN = server.healthyAfterMs;
    const restartCpuWithN = server.cpuMsToHealthy;
    const spawnedAt = server.spawnedAt;
    await until(
      'every instance open after the restart',
      async () => ((await openCount(api)) >= N ? true : undefined),
      600_000,
      50,
    );
    const restartAllOpenMs = performance.now() - spawnedAt;
    console.log(
      `  restart with ${N}: /health after ${s(restartHealthWithN)} s, all open after ${s(restartAllOpenMs)} s`,
    );
    await measure(`zapwire, ${N} paired idle instances, after a restart`);
    stops.push(await server.stop());

    // Bare Baileys: the same N, the same sandbox, memory read the same way.
    bare = startBareBaileys(sandbox);
    await bare.next('ready');
    const bare0 = await idleMemory(bare.child.pid!, processOnly);
    const pairBare = async (count: number): Promise<number> => {
      const phones: string[] = [];
      for (let i = 0; i < count; i++) phones.push(await sandbox!.newPhone());
      const paired = bare!.next('paired');
      bare!.send({ type: 'pair', phones, concurrency: PAIR_CONCURRENCY });
      return ((await paired) as { seconds: number }).seconds;
    };
    let bareSeconds = await pairBare(1);
    const bare1 = await idleMemory(bare.child.pid!, processOnly);
    bareSeconds += await pairBare(N - 1);
    const bareN = await idleMemory(bare.child.pid!, processOnly);
    console.log(
      `  bare Baileys: paired ${N} in ${bareSeconds.toFixed(1)} s, RSS ${mb(bare0.rssKb)} → ${mb(bare1.rssKb)} → ${mb(bareN.rssKb)} MB`,
    );
    const bareExited = new Promise((r) => bare!.child.once('exit', r));
    bare.send({ type: 'exit' });
    await Promise.race([bareExited, sleep(5_000)]);
    bare.child.kill('SIGKILL');

    // ---- tables
    const loadAfter = loadavg();
    console.log('');
    console.log('Start-up (compiled server, default configuration: embedded PostgreSQL)');
    console.log(
      table(
        ['measure', 'runs', 'median s', 'min s', 'max s', 'CPU s', 'target', 'met'],
        [
          ...(build.compiled
            ? [['compile to dist/ (first `npm start` of a checkout)', '1', s(build.ms), '', '', '', '', '']]
            : []),
          ['`npm start` prestart check, nothing stale', '1', s(prestart.ms), '', '', '', '', ''],
          [
            'first start, fresh DATA_DIR (initdb) → 200 /health',
            String(firstStarts.length),
            ...stats(firstStarts),
            s(median(firstCpu)),
            `≤ ${TARGET.firstStartMs / 1000} s`,
            met(median(firstStarts) <= TARGET.firstStartMs),
          ],
          [
            'restart, 0 instances → 200 /health',
            String(restarts.length),
            ...stats(restarts),
            s(median(restartCpu)),
            `≤ ${TARGET.restartMs / 1000} s`,
            met(median(restarts) <= TARGET.restartMs),
          ],
          [
            `restart, ${N} paired instances → 200 /health`,
            '1',
            s(restartHealthWithN),
            '',
            '',
            s(restartCpuWithN),
            `≤ ${TARGET.restartMs / 1000} s`,
            met(restartHealthWithN <= TARGET.restartMs),
          ],
          [`restart, ${N} paired instances → all ${N} open`, '1', s(restartAllOpenMs), '', '', '', '', ''],
          [
            'SIGTERM → server and PostgreSQL exited',
            String(stops.length),
            ...stats(stops),
            '',
            `≤ ${TARGET.stopMs / 1000} s`,
            met(Math.max(...stops) <= TARGET.stopMs),
          ],
        ],
      ),
    );

    console.log('');
    console.log('Where start-up time goes (median per phase; s)');
    const phaseMedian = (runs: Array<Map<Phase, number>>, phase: Phase): string => {
      const values = runs.map((r) => r.get(phase)).filter((v): v is number => v !== undefined);
      return values.length > 0 ? s(median(values)) : '–';
    };
    console.log(
      table(
        ['phase', 'first start', 'restart, 0 instances', `restart, ${N} paired`],
        PHASES.map((phase) => [
          phase,
          phaseMedian(phases.first, phase),
          phaseMedian(phases.restart, phase),
          phaseMedian(phases.withN, phase),
        ]),
      ),
    );

    console.log('');
    console.log(`Idle memory after ${SETTLE_MS / 1000} s (median of ${SAMPLES} readings); MB`);
    console.log(
      table(
        [
          'state',
          'tree RSS',
          'tree PSS',
          'node RSS',
          'postgres RSS (procs)',
          'node heap used / total',
          'target',
          'met',
        ],
        [
          ...memory.map((m, i) => {
            const pgCount = m.tree.processes.filter((p) => p.title.includes('postgres')).length;
            return [
              m.label,
              mb(m.tree.rssKb),
              mb(m.tree.pssKb),
              mb(nodeKb(m.tree, m.pid)),
              `${mb(postgresKb(m.tree, 'rssKb'))} (${pgCount})`,
              m.heap ? `${m.heap.heapUsedMb.toFixed(1)} / ${m.heap.heapTotalMb.toFixed(1)}` : '–',
              i === 0 ? `≤ ${TARGET.idleTreeMb}` : '',
              i === 0 ? met(m.tree.rssKb / 1024 <= TARGET.idleTreeMb) : '',
            ];
          }),
          [
            'bare Baileys, 0 sockets (process)',
            mb(bare0.rssKb),
            mb(bare0.pssKb),
            mb(bare0.rssKb),
            '',
            '',
            '',
            '',
          ],
          [
            'bare Baileys, 1 socket (process)',
            mb(bare1.rssKb),
            mb(bare1.pssKb),
            mb(bare1.rssKb),
            '',
            '',
            '',
            '',
          ],
          [
            `bare Baileys, ${N} sockets (process)`,
            mb(bareN.rssKb),
            mb(bareN.pssKb),
            mb(bareN.rssKb),
            '',
            '',
            '',
            '',
          ],
        ],
      ),
    );

    // memory: [0 instances, 1 paired, N paired, N paired after a restart]
    const one = memory[1]!;
    const withN = memory[2]!;
    const restartedN = memory[3]!;
    const perInstance = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? undefined : (b - a) / (N - 1);
    const zapRss = perInstance(one.tree.rssKb, withN.tree.rssKb)!;
    const zapPss = perInstance(one.tree.pssKb, withN.tree.pssKb);
    const zapRssRestarted = perInstance(one.tree.rssKb, restartedN.tree.rssKb)!;
    const zapPssRestarted = perInstance(one.tree.pssKb, restartedN.tree.pssKb);
    const bareRss = perInstance(bare1.rssKb, bareN.rssKb)!;
    const barePss = perInstance(bare1.pssKb, bareN.pssKb);
    const kb = (v: number | undefined) => (v === undefined ? '–' : String(Math.round(v)));
    console.log('');
    console.log(`Per idle paired instance: (memory with ${N} − memory with 1) / ${N - 1}; KB`);
    console.log(
      table(
        ['', 'RSS KB/inst', 'PSS KB/inst', 'target', 'met'],
        [
          ['zapwire (whole tree)', kb(zapRss), kb(zapPss), '', ''],
          [
            '  of which the node process',
            kb(perInstance(nodeKb(one.tree, one.pid), nodeKb(withN.tree, withN.pid))),
            '',
            '',
            '',
          ],
          [
            '  of which PostgreSQL',
            kb(perInstance(postgresKb(one.tree, 'rssKb'), postgresKb(withN.tree, 'rssKb'))),
            '',
            '',
            '',
          ],
          ['zapwire (whole tree), after a restart', kb(zapRssRestarted), kb(zapPssRestarted), '', ''],
          ['bare Baileys (process)', kb(bareRss), kb(barePss), '', ''],
          [
            'zapwire − bare Baileys',
            kb(zapRss - bareRss),
            zapPss === undefined || barePss === undefined ? '–' : kb(zapPss - barePss),
            `≤ ${TARGET.perInstanceAboveBaileysKb}`,
            met(zapRss - bareRss <= TARGET.perInstanceAboveBaileysKb),
          ],
          [
            'zapwire − bare Baileys, after a restart',
            kb(zapRssRestarted - bareRss),
            zapPssRestarted === undefined || barePss === undefined ? '–' : kb(zapPssRestarted - barePss),
            `≤ ${TARGET.perInstanceAboveBaileysKb}`,
            met(zapRssRestarted - bareRss <= TARGET.perInstanceAboveBaileysKb),
          ],
        ],
      ),
    );

    console.log('');
    console.log('Where the memory goes (zapwire tree by process role; MB)');
    const roles = memory.map((m) => new Map(byRole(m.tree).map((r) => [r.role, r])));
    const roleNames = [...new Set(roles.flatMap((r) => [...r.keys()]))];
    console.log(
      table(
        ['process', ...memory.flatMap((m) => [`${m.label.replace('zapwire, ', '')}: n`, 'RSS', 'PSS'])],
        roleNames.map((role) => [
          role,
          ...roles.flatMap((r) => {
            const entry = r.get(role);
            return entry ? [String(entry.count), mb(entry.rssKb), mb(entry.pssKb)] : ['0', '', ''];
          }),
        ]),
      ),
    );
    console.log(
      `\npaired ${N} instances through the API in ${pairingSeconds.toFixed(1)} s (bare Baileys: ${bareSeconds.toFixed(1)} s), ${PAIR_CONCURRENCY} at a time.` +
        '\nCPU s: user + system CPU time the server tree had used at its first 200 on /health (initdb included);' +
        '\non a loaded machine wall time is mostly the wait for a core, CPU time is what the start costs.' +
        '\nRSS sums count PostgreSQL shared memory once per process that touched it; PSS shares it out.' +
        `\nload average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(1)).join(' ')} after, on ${cpus().length} cores.`,
    );
  } finally {
    bare?.child.kill('SIGKILL');
    await stopAllServers();
    await sandbox?.close().catch(() => undefined);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', killAllServersNow);
    if (KEEP) console.log(`  data and logs kept in ${scratch}`);
    else {
      removeServerData();
      rmSync(scratch, { recursive: true, force: true });
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchFootprint().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
