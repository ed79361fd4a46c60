/**
 * The compiled server as `npm start` runs it (`node dist/src/main.js`, no wrapper), on the default
 * configuration: no DATABASE_URL, so it starts its embedded PostgreSQL under DATA_DIR. Every server
 * started here is tracked, so that a failing or interrupted bench still ends it and its PostgreSQL.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';
import { START_NODE_FLAGS } from '../support/server-env.ts';
import { descendantsOf, treeCpuMs } from './process-tree.ts';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Variables that would take the server off its default configuration (or point it at a test database). */
const NOT_DEFAULT = [
  'DATABASE_URL',
  'EVENTSTORE_URL',
  'AMQP_URL',
  'NATS_URL',
  'WEBHOOK_GLOBAL_URL',
  'TEST_DATABASE_URL',
  'GLOBAL_API_KEY',
  'SESSION_ENCRYPTION_KEY',
  'LOG_LEVEL',
  'PORT',
  'HOST',
  'DATA_DIR',
  'NODE_OPTIONS',
];

export interface ServerOptions {
  readonly dataDir: string;
  readonly port: number;
  /** The sandbox in place of WhatsApp. */
  readonly waWebSocketUrl: string;
  readonly waNoiseRootPublicKey: string;
  /** Appended to: the server's stdout and stderr. */
  readonly logFile: string;
  /** The compiled entry point; default dist/src/main.js (a patched copy, for experiments). */
  readonly entry?: string;
}

export interface RunningServer {
  readonly pid: number;
  readonly url: string;
  /** ms from spawn to the first 200 on GET /health. */
  readonly healthyAfterMs: number;
  /** CPU time the server's tree had used by then (ms): the start's cost, whatever the machine's load. */
  readonly cpuMsToHealthy: number;
  /** The spawn, as performance.now(). */
  readonly spawnedAt: number;
  /** The spawn and the first 200, as Date.now() (to compare with the servers' log timestamps). */
  readonly spawnedAtEpochMs: number;
  readonly healthyAtEpochMs: number;
  /** SIGTERM, then wait for the process and its PostgreSQL to exit; resolves with the ms it took. */
  stop(): Promise<number>;
}

/** Running servers and their DATA_DIR. */
const live = new Map<ChildProcess, string>();
/** Every DATA_DIR a server was started on (a PostgreSQL may outlive a killed server there). */
const dataDirs = new Set<string>();

/** `npm start`'s prestart: compile to dist/ unless it is up to date. Returns ms spent, and whether it compiled. */
export function buildIfStale(): { ms: number; compiled: boolean } {
  const stamp = join(root, 'dist', '.build-stamp');
  const stampBefore = existsSync(stamp) ? statSync(stamp).mtimeMs : undefined;
  const t0 = performance.now();
  const result = spawnSync(process.execPath, [join(root, 'scripts/build.mjs'), '--if-stale'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (result.status !== 0) throw new Error(`scripts/build.mjs --if-stale exited with ${result.status}`);
  const ms = performance.now() - t0;
  return { ms, compiled: !existsSync(stamp) || statSync(stamp).mtimeMs !== stampBefore };
}

/** A loopback port free at the time of asking. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolveExit) => child.once('exit', () => resolveExit()));
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The embedded PostgreSQL's postmaster pid recorded in a data directory, if that process still runs. */
function postmasterOf(dataDir: string): number | undefined {
  const pidFile = join(dataDir, 'postgres', 'cluster', 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const [pidLine, clusterLine] = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(pidLine);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('postgres') && cmdline.includes(clusterLine ?? '\0') ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  dataDirs.add(options.dataDir);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of NOT_DEFAULT) delete env[name];
  // For experiments only (e.g. V8 flags); unset, the server runs exactly as `npm start` runs it.
  if (process.env['BENCH_NODE_OPTIONS']) env['NODE_OPTIONS'] = process.env['BENCH_NODE_OPTIONS'];
  Object.assign(env, {
    DATA_DIR: options.dataDir,
    PORT: String(options.port),
    WA_WEBSOCKET_URL: options.waWebSocketUrl,
    WA_NOISE_ROOT_PUBLIC_KEY: options.waNoiseRootPublicKey,
  });
  const url = `http://127.0.0.1:${options.port}`;
  const log = openSync(options.logFile, 'a');
  const spawnedAt = performance.now();
  const spawnedAtEpochMs = Date.now();
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...START_NODE_FLAGS, options.entry ?? join(root, 'dist/src/main.js')], {
      cwd: root,
      env,
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  live.set(child, options.dataDir);
  child.once('exit', () => live.delete(child));
  const pid = child.pid;
  if (pid === undefined) throw new Error('the server could not be spawned');

  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `the server exited during start-up (${child.exitCode ?? child.signalCode}):\n${tail(options.logFile)}`,
      );
    }
    if (await healthy(url)) break;
    if (Date.now() > deadline) {
      await stopChild(child, options.dataDir);
      throw new Error(`no 200 on ${url}/health within 120 s:\n${tail(options.logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const healthyAfterMs = performance.now() - spawnedAt;
  const cpuMsToHealthy = treeCpuMs(pid);
  return {
    cpuMsToHealthy,
    pid,
    url,
    healthyAfterMs,
    spawnedAt,
    spawnedAtEpochMs,
    healthyAtEpochMs: Date.now(),
    stop: async () => {
      const t0 = performance.now();
      await stopChild(child, options.dataDir);
      return performance.now() - t0;
    },
  };
}

/**
 * SIGTERM (what a supervisor sends) and wait for the server and its PostgreSQL; SIGKILL whatever is left
 * after 20 s (the server's own limit is 15 s), and say so.
 */
async function stopChild(child: ChildProcess, dataDir: string): Promise<void> {
  const pid = child.pid;
  const tree = pid === undefined ? [] : descendantsOf(pid);
  child.kill('SIGTERM');
  const inTime = await Promise.race([
    exited(child).then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 20_000).unref()),
  ]);
  if (!inTime) {
    process.stderr.write(
      `  footprint: the server (pid ${pid}) did not exit within 20 s of SIGTERM; killing it\n`,
    );
    child.kill('SIGKILL');
    await exited(child);
  }
  // The server stops its PostgreSQL before it exits; anything still running from its tree is a leak.
  const postmaster = postmasterOf(dataDir);
  const leftovers = [...new Set([...tree.filter((p) => p !== pid), ...(postmaster ? [postmaster] : [])])];
  for (const leftover of leftovers) {
    if (await waitGone(leftover, inTime ? 5_000 : 0)) continue;
    process.stderr.write(`  footprint: process ${leftover} outlived the server; killing it\n`);
    try {
      process.kill(leftover, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Ends every server started here that still runs (after a failure), and any PostgreSQL they left. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...live].map(([child, dataDir]) => stopChild(child, dataDir)));
  for (const dataDir of dataDirs) {
    const postmaster = postmasterOf(dataDir);
    if (postmaster === undefined) continue;
    process.stderr.write(
      `  footprint: PostgreSQL ${postmaster} was left running in ${dataDir}; stopping it\n`,
    );
    try {
      process.kill(postmaster, 'SIGQUIT');
    } catch {
      continue;
    }
    if (!(await waitGone(postmaster, 5_000))) process.kill(postmaster, 'SIGKILL');
  }
}

/**
 * Removes the data of every server started here (stopped by then): as root a cluster lives outside its
 * DATA_DIR, under /var/lib/zapwire-pg, and would outlive the scratch directory.
 */
export function removeServerData(): void {
  for (const dataDir of dataDirs) removeEmbeddedPostgres(join(dataDir, 'postgres'));
}

/** Last resort when the bench process itself exits abruptly: synchronous, no waiting. */
export function killAllServersNow(): void {
  for (const child of live.keys()) {
    for (const pid of child.pid === undefined ? [] : descendantsOf(child.pid).reverse()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const dataDir of dataDirs) {
    const postmaster = postmasterOf(dataDir);
    if (postmaster !== undefined) {
      try {
        process.kill(postmaster, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
