/**
 * Idle cost benchmark (`npm run bench -- idle`): what instances that do nothing cost, measured the way an
 * operator meets it. For each instance count it starts the compiled server as `npm start` runs it (the
 * default configuration: the embedded PostgreSQL under a fresh DATA_DIR), creates that many instances
 * through the API and never connects them, lets the server settle, and then reads the CPU time of the
 * whole process tree (node and every PostgreSQL process, from /proc) over a window: the figure is the
 * share of one core the tree used while nobody asked it anything.
 *
 * It also reports the create rate and the first page of `GET /instance/all` (time and size).
 *
 * Settings (environment):
 *   BENCH_IDLE_INSTANCES     instance counts, comma-separated (default "5,10000")
 *   BENCH_IDLE_SETTLE_MS     idle time after the creates before measuring (default 20000)
 *   BENCH_IDLE_WINDOW_MS     measuring window (default 60000)
 *   BENCH_IDLE_CONCURRENCY   creates in flight (default 8)
 *   BENCH_IDLE_ENTRY         the compiled entry point to measure (default dist/src/main.js; another
 *                            build's, to compare two versions on the same machine at the same time)
 *   BENCH_KEEP_DATA=1        keep the data directories (and the servers' logs)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { treeCpuMs } from '../footprint/process-tree.ts';
import {
  buildIfStale,
  freePort,
  killAllServersNow,
  startServer,
  stopAllServers,
} from '../footprint/server.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

function numbers(name: string, fallback: string): number[] {
  const values = (process.env[name] ?? fallback).split(',').map((v) => Number(v.trim()));
  if (values.some((v) => !Number.isFinite(v) || v < 0)) throw new Error(`${name}: expected numbers`);
  return values;
}

const COUNTS = numbers('BENCH_IDLE_INSTANCES', '5,10000').map(Math.round);
const [SETTLE_MS] = numbers('BENCH_IDLE_SETTLE_MS', '20000') as [number];
const [WINDOW_MS] = numbers('BENCH_IDLE_WINDOW_MS', '60000') as [number];
const [CONCURRENCY] = numbers('BENCH_IDLE_CONCURRENCY', '8') as [number];
const KEEP = process.env['BENCH_KEEP_DATA'] === '1';
const ENTRY = process.env['BENCH_IDLE_ENTRY'];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface IdleResult {
  readonly instances: number;
  readonly createsPerSecond: number;
  readonly idleCpuPercent: number;
  readonly listMs: number;
  readonly listBytes: number;
  readonly listItems: number;
}

async function measure(instances: number): Promise<IdleResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'zw-bench-idle-'));
  const port = await freePort();
  const server = await startServer({
    dataDir,
    port,
    // Never connected: the instances only need a WhatsApp endpoint to be configured.
    waWebSocketUrl: 'ws://127.0.0.1:9',
    waNoiseRootPublicKey: randomBytes(32).toString('hex'),
    logFile: join(dataDir, 'server.log'),
    ...(ENTRY ? { entry: ENTRY } : {}),
  });
  try {
    const apikey = readFileSync(join(dataDir, 'global-api-key'), 'utf8').trim();
    let next = 0;
    const started = performance.now();
    const create = async (): Promise<void> => {
      while (next < instances) {
        const i = next++;
        const response = await fetch(`${server.url}/instance/create`, {
          method: 'POST',
          headers: { apikey, 'content-type': 'application/json' },
          body: JSON.stringify({ name: `idle-${i}` }),
          signal: AbortSignal.timeout(60_000),
        });
        const text = await response.text();
        if (response.status !== 201) throw new Error(`create idle-${i}: ${response.status} ${text}`);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, CONCURRENCY) }, create));
    const createsPerSecond = instances / ((performance.now() - started) / 1000);

    await sleep(SETTLE_MS);
    const cpuBefore = treeCpuMs(server.pid);
    const windowStart = performance.now();
    await sleep(WINDOW_MS);
    const cpuMs = treeCpuMs(server.pid) - cpuBefore;
    const idleCpuPercent = (cpuMs / (performance.now() - windowStart)) * 100;

    const listStart = performance.now();
    const list = await fetch(`${server.url}/instance/all`, {
      headers: { apikey },
      signal: AbortSignal.timeout(60_000),
    });
    const body = Buffer.from(await list.arrayBuffer());
    const listMs = performance.now() - listStart;
    const parsed = JSON.parse(body.toString('utf8')) as unknown;
    const items = Array.isArray(parsed)
      ? parsed
      : Array.isArray((parsed as { data?: unknown }).data)
        ? ((parsed as { data: unknown[] }).data ?? [])
        : [];
    return {
      instances,
      createsPerSecond,
      idleCpuPercent,
      listMs,
      listBytes: body.length,
      listItems: items.length,
    };
  } finally {
    await server.stop();
    if (!KEEP) {
      // As root the embedded PostgreSQL's cluster lives outside DATA_DIR (/var/lib/zapwire-pg).
      removeEmbeddedPostgres(join(dataDir, 'postgres'));
      rmSync(dataDir, { recursive: true, force: true });
    } else console.log(`  kept ${dataDir}`);
  }
}

export default async function idleBench(): Promise<void> {
  process.once('exit', killAllServersNow);
  buildIfStale();
  console.log(
    `idle cost of ${ENTRY ?? 'dist/src/main.js'}: ${cpus().length} cores, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; settle ${SETTLE_MS} ms, window ${WINDOW_MS} ms, ${CONCURRENCY} creates in flight`,
  );
  const results: IdleResult[] = [];
  try {
    for (const count of COUNTS) {
      const result = await measure(count);
      results.push(result);
      console.log(
        `  ${count} instances: idle CPU ${result.idleCpuPercent.toFixed(1)} % of a core; ${result.createsPerSecond.toFixed(0)} creates/s; GET /instance/all ${result.listItems} items, ${(result.listBytes / 1024).toFixed(0)} KiB in ${result.listMs.toFixed(0)} ms`,
      );
    }
  } finally {
    await stopAllServers();
  }
  console.log('\n| instances | idle CPU (% of a core) | creates/s | GET /instance/all (items, KiB, ms) |');
  console.log('|--:|--:|--:|--:|');
  for (const r of results)
    console.log(
      `| ${r.instances} | ${r.idleCpuPercent.toFixed(1)} | ${r.createsPerSecond.toFixed(0)} | ${r.listItems}, ${(r.listBytes / 1024).toFixed(0)}, ${r.listMs.toFixed(0)} |`,
    );
  const [small, large] = [results[0], results.at(-1)];
  if (small && large && large !== small)
    console.log(
      `\n${large.instances} vs ${small.instances} instances: ${(large.idleCpuPercent / Math.max(0.01, small.idleCpuPercent)).toFixed(1)}× the idle CPU (target: at most 2×)`,
    );
}
