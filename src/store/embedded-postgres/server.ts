/**
 * A private native PostgreSQL that zapwire starts itself when no DATABASE_URL is given (the embedded
 * default). It is zapwire's child process, listens on a Unix socket in a 0700 directory only (no TCP),
 * keeps its password and log under the directory it is given and its cluster there too, or where the
 * dedicated user can reach it when zapwire runs as root (layout.ts), and is tuned for a small footprint.
 *
 * Lifecycle:
 * - first start: initdb into a temporary directory, renamed into place only when complete, so a crash
 *   during initialisation leaves nothing half-made;
 * - every start: a PostgreSQL left running by a zapwire that was killed (SIGKILL, OOM) is stopped, and a
 *   stale postmaster.pid whose pid now belongs to another process is removed; a zapwire that is still
 *   running on the same cluster is refused;
 * - while running: a server that exits on its own (killed, or stopped by a full disk) is started again,
 *   at most `restarts` times in ten minutes; past that budget `onGiveUp` is told, and zapwire exits
 *   non-zero so that its supervisor restarts both. `outage()` says what happened meanwhile;
 * - stop: fast shutdown (SIGINT: open transactions roll back, a checkpoint is written), SIGQUIT then
 *   SIGKILL if it does not exit in time. A process exit that skips stop() still sends SIGINT.
 * - as root: PostgreSQL refuses to run as root, so it runs as a dedicated system user (created when
 *   missing) that owns only the cluster and socket directories (run-as.ts).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { findPostgresBinaries, type PostgresBinaries } from './binaries.ts';
import { EmbeddedPostgresError } from './errors.ts';
import { linkCluster, prepareLayout, resolveLayout, type Layout } from './layout.ts';
import {
  commandLineOf,
  identityOf,
  isAlive,
  isRunning,
  waitForExit,
  type ProcessIdentity,
} from './processes.ts';
import { reachableBinaries, resolveRunAs, type RunAs } from './run-as.ts';

export { EMBEDDED_POSTGRES_USER, EMBEDDED_POSTGRES_HOME } from './run-as.ts';

const DATABASE = 'zapwire';
const ROLE = 'zapwire';
/** The window of the restart budget. */
const RESTART_WINDOW_MS = 10 * 60_000;

export interface EmbeddedPostgresOptions {
  /** Holds the password, log and (or a link to) the cluster; created when missing. */
  readonly directory: string;
  /** Default 40: the app's pool, LISTEN connections and a replay CLI beside it. */
  readonly maxConnections?: number;
  /** Extra server settings (`-c name=value`), applied after the defaults. */
  readonly settings?: Readonly<Record<string, string>>;
  /**
   * One-line notices: initialised, where the database is, recovered after a crash ('info'); exited on its
   * own, a restart failed, given up ('warn').
   */
  readonly notice?: (message: string, level?: 'info' | 'warn') => void;
  readonly startTimeoutMs?: number;
  /**
   * When a running zapwire owns the server, connect to it instead of refusing (tools beside the server,
   * such as the replay CLI). The returned stop() then leaves it running.
   */
  readonly attach?: boolean;
  /**
   * Restarts of a server that exits on its own, in any ten minutes, before giving up (default 5; 0 gives
   * up at the first exit).
   */
  readonly restarts?: number;
  /** The server exited on its own and the restart budget is spent (or a restart failed for good). */
  readonly onGiveUp?: (reason: string) => void;
}

/** Why the server is not answering, while it is being restarted or after giving up. */
export interface EmbeddedPostgresOutage {
  /** One line for the log: how it exited, with the last problem of its log. */
  readonly reason: string;
  /** The same without paths or log lines, for anyone who reads /health. */
  readonly summary: string;
  readonly since: Date;
  /** 'restarting' while the budget lasts, then 'failed'. */
  readonly state: 'restarting' | 'failed';
}

export interface EmbeddedPostgres {
  /** A node-postgres connection string (Unix socket, password included). */
  readonly url: string;
  /** The postmaster's pid (the current one: a restart changes it). */
  readonly pid: number;
  readonly major: number;
  /** True when this start ran initdb. */
  readonly initialised: boolean;
  readonly logFile: string;
  /** The cluster directory; outside the given directory when zapwire runs as root and must keep it apart. */
  readonly cluster: string;
  /** Undefined while the server runs. */
  outage(): EmbeddedPostgresOutage | undefined;
  /** Fast shutdown; resolves when the server has exited. Safe to call twice. */
  stop(): Promise<void>;
}

/** The settings that keep an idle embedded server small; the caller's settings override them. */
export function defaultSettings(
  layout: Pick<Layout, 'socketDirectory'>,
  major: number,
  maxConnections: number,
): Record<string, string> {
  return {
    listen_addresses: '',
    unix_socket_directories: layout.socketDirectory,
    unix_socket_permissions: '0700',
    max_connections: String(maxConnections),
    shared_buffers: '16MB',
    wal_buffers: '1MB',
    work_mem: '4MB',
    maintenance_work_mem: '16MB',
    // No replication, so WAL needs only what crash recovery needs.
    wal_level: 'minimal',
    max_wal_senders: '0',
    min_wal_size: '32MB',
    max_wal_size: '256MB',
    max_worker_processes: '2',
    max_parallel_workers: '0',
    max_parallel_workers_per_gather: '0',
    max_parallel_maintenance_workers: '0',
    max_logical_replication_workers: '0',
    autovacuum_max_workers: '1',
    jit: 'off',
    huge_pages: 'off',
    // PostgreSQL 18 does asynchronous I/O in three worker processes by default; small databases gain
    // nothing from them.
    ...(major >= 18 ? { io_method: 'sync' } : {}),
  };
}

function readOwner(file: string): ProcessIdentity | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<ProcessIdentity>;
    return typeof parsed.pid === 'number'
      ? { pid: parsed.pid, startTime: parsed.startTime ?? null }
      : undefined;
  } catch {
    return undefined;
  }
}

/** The pid of a live zapwire that owns the server in this directory, if any. */
function liveOwner(layout: Layout): number | undefined {
  const owner = readOwner(layout.ownerFile);
  return owner && owner.pid !== process.pid && isAlive(owner) ? owner.pid : undefined;
}

/**
 * Makes sure no PostgreSQL is left on the cluster from an earlier run, and that no other zapwire uses it.
 */
async function recover(layout: Layout, notice: (message: string) => void): Promise<void> {
  const owner = readOwner(layout.ownerFile);
  if (owner && owner.pid !== process.pid && isAlive(owner)) {
    throw new EmbeddedPostgresError(
      `another zapwire (pid ${owner.pid}) is running on ${layout.directory}: stop it first, or give this one its own DATA_DIR`,
    );
  }
  const pidFile = join(layout.cluster, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const [pidLine, dataLine] = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(pidLine);
  const ours =
    Number.isInteger(pid) &&
    pid > 0 &&
    isRunning(pid) &&
    resolve(dataLine ?? '') === layout.cluster &&
    /postgres/.test(commandLineOf(pid) || 'postgres');
  if (!ours) {
    // The server is gone; a reused pid would make PostgreSQL believe it still runs.
    rmSync(pidFile, { force: true });
    notice('the embedded PostgreSQL was not shut down cleanly last time; it recovers from its WAL now');
    return;
  }
  notice(`stopping the embedded PostgreSQL (pid ${pid}) left running by a zapwire that did not shut down`);
  process.kill(pid, 'SIGINT');
  if (await waitForExit(pid, 15_000)) return;
  process.kill(pid, 'SIGQUIT');
  if (await waitForExit(pid, 5_000)) return;
  process.kill(pid, 'SIGKILL');
  await waitForExit(pid, 5_000);
}

function runInitdb(
  binaries: PostgresBinaries,
  layout: Layout,
  password: string,
  runAs: RunAs | undefined,
): void {
  const staging = `${layout.cluster}.initdb`;
  rmSync(staging, { recursive: true, force: true });
  // Made by us (initdb accepts an empty directory): as root, the dedicated user cannot create entries in
  // our directory.
  mkdirSync(staging, { mode: 0o700 });
  if (runAs) chownSync(staging, runAs.uid, runAs.gid);
  // Beside the cluster: the dedicated user reads it, and may not be able to enter layout.directory.
  const pwfile = join(dirname(layout.cluster), `initdb-password-${randomBytes(4).toString('hex')}`);
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (runAs) chownSync(pwfile, runAs.uid, runAs.gid);
  try {
    execFileSync(
      binaries.initdb,
      [
        `--pgdata=${staging}`,
        `--username=${ROLE}`,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-instructions',
      ],
      { stdio: 'pipe', env: { ...process.env, LC_ALL: 'C' }, ...(runAs ?? {}) },
    );
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    const reason = stderr.split('\n').find((line) => /error|fatal/i.test(line)) ?? (error as Error).message;
    throw new EmbeddedPostgresError(`initdb failed: ${reason.trim()}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
  renameSync(staging, layout.cluster);
  linkCluster(layout);
}

/** The last FATAL/PANIC/ERROR line of the server log, for a one-line start-up failure. */
function lastProblem(logFile: string): string | undefined {
  try {
    const lines = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-50);
    return [...lines]
      .reverse()
      .find((line) => /\b(FATAL|PANIC|ERROR)\b/.test(line))
      ?.replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, '$1: ');
  } catch {
    return undefined;
  }
}

async function waitUntilReady(
  url: string,
  child: ChildProcess,
  logFile: string,
  timeoutMs: number,
): Promise<void> {
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      throw new EmbeddedPostgresError(
        `the embedded PostgreSQL stopped during start-up: ${lastProblem(logFile) ?? 'no reason in its log'} (log: ${logFile})`,
      );
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => undefined);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new EmbeddedPostgresError(
        `the embedded PostgreSQL did not accept connections within ${timeoutMs} ms: ${lastProblem(logFile) ?? 'no reason in its log'} (log: ${logFile})`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ensureDatabase(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (!rowCount) await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
}

function urlOf(layout: Layout, password: string, database: string): string {
  return `postgresql://${ROLE}:${encodeURIComponent(password)}@localhost/${database}?host=${encodeURIComponent(layout.socketDirectory)}`;
}

/** A started postmaster: its process, and a promise that settles when it exits. */
interface Postmaster {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

/** Spawns the postmaster and waits until it accepts connections; on failure it is gone again. */
async function startPostmaster(
  binaries: PostgresBinaries,
  layout: Layout,
  settings: Readonly<Record<string, string>>,
  password: string,
  runAs: RunAs | undefined,
  timeoutMs: number,
): Promise<Postmaster> {
  const logFd = openSync(layout.logFile, 'a', 0o600);
  chmodSync(layout.logFile, 0o600);
  let child: ChildProcess;
  try {
    child = spawn(
      binaries.postgres,
      [
        '-D',
        layout.cluster,
        ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
      ],
      {
        // Its own process group: a Ctrl-C in the terminal reaches zapwire, which stops PostgreSQL after
        // it has closed its own connections, instead of both at once.
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, LC_ALL: 'C' },
        ...(runAs ?? {}),
      },
    );
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    throw new EmbeddedPostgresError(`the embedded PostgreSQL could not be started (${binaries.postgres})`);
  }
  let exited = false;
  const exitedPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once('exit', (code, signal) => {
      exited = true;
      resolveExit({ code, signal });
    }),
  );
  try {
    await waitUntilReady(urlOf(layout, password, 'postgres'), child, layout.logFile, timeoutMs);
    await ensureDatabase(urlOf(layout, password, 'postgres'));
  } catch (error) {
    if (!exited) child.kill('SIGKILL');
    await exitedPromise;
    throw error instanceof EmbeddedPostgresError
      ? error
      : new EmbeddedPostgresError(`the embedded PostgreSQL did not start: ${(error as Error).message}`);
  }
  return { child, pid, exited: exitedPromise, hasExited: () => exited };
}

/**
 * After a postmaster died: its backends may still run (they notice a dead postmaster only when they next
 * wait) and hold the shared memory a new one needs. They are in its process group.
 */
function killLeftovers(postmaster: Postmaster, layout: Layout): void {
  try {
    process.kill(-postmaster.pid, 'SIGKILL');
  } catch {
    // none left
  }
  const pidFile = join(layout.cluster, 'postmaster.pid');
  if (existsSync(pidFile) && !isRunning(Number(readFileSync(pidFile, 'utf8').split('\n')[0]))) {
    rmSync(pidFile, { force: true });
  }
}

function diskFull(logFile: string): boolean {
  return /No space left on device/i.test(lastProblem(logFile) ?? '');
}

function describeExit(
  exit: { code: number | null; signal: NodeJS.Signals | null },
  logFile: string,
): Pick<EmbeddedPostgresOutage, 'reason' | 'summary'> {
  const how = exit.signal ? `was killed (${exit.signal})` : `exited with code ${exit.code}`;
  const problem = lastProblem(logFile);
  return {
    reason: `the embedded PostgreSQL ${how}${problem ? `: ${problem}` : ''}`,
    summary: `the embedded PostgreSQL ${how}${diskFull(logFile) ? ' (the disk is full)' : ''}`,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const notice = options.notice ?? (() => undefined);
  const runAs = resolveRunAs(notice);
  const layout = resolveLayout(options.directory, runAs);
  const found = await findPostgresBinaries();
  const binaries = runAs ? reachableBinaries(found, runAs) : found;

  if (options.attach && liveOwner(layout) !== undefined) {
    const password = readFileSync(layout.passwordFile, 'utf8').trim();
    const [pidLine] = readFileSync(join(layout.cluster, 'postmaster.pid'), 'utf8').split('\n');
    return {
      url: urlOf(layout, password, DATABASE),
      pid: Number(pidLine),
      major: binaries.major,
      initialised: false,
      logFile: layout.logFile,
      cluster: layout.cluster,
      outage: () => undefined,
      stop: () => Promise.resolve(),
    };
  }
  prepareLayout(layout, runAs, notice);
  await recover(layout, notice);
  // A first start interrupted during initdb leaves its password file; the next initdb makes a new one.
  for (const directory of new Set([layout.directory, dirname(layout.cluster)])) {
    for (const name of readdirSync(directory)) {
      if (name.startsWith('initdb-password-')) rmSync(join(directory, name), { force: true });
    }
  }
  writeFileSync(layout.ownerFile, JSON.stringify(identityOf(process.pid)), { mode: 0o600 });

  let password: string;
  let initialised = false;
  if (!existsSync(join(layout.cluster, 'PG_VERSION'))) {
    password = randomBytes(24).toString('base64url');
    // Written before initdb: a cluster is never in place without its password.
    writeFileSync(layout.passwordFile, `${password}\n`, { mode: 0o600 });
    runInitdb(binaries, layout, password, runAs);
    initialised = true;
  } else {
    try {
      password = readFileSync(layout.passwordFile, 'utf8').trim();
    } catch {
      throw new EmbeddedPostgresError(
        `${layout.passwordFile} is missing: the embedded PostgreSQL in ${layout.cluster} cannot be opened without it (restore it from a backup of DATA_DIR)`,
      );
    }
  }
  chmodSync(layout.passwordFile, 0o600);

  const settings = {
    ...defaultSettings(layout, binaries.major, options.maxConnections ?? 40),
    ...options.settings,
  };
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const start = (): Promise<Postmaster> =>
    startPostmaster(binaries, layout, settings, password, runAs, timeoutMs);
  let current = await start();
  if (initialised) notice(`initialised the embedded PostgreSQL ${binaries.major} in ${layout.cluster}`);

  let stopping: Promise<void> | undefined;
  /** A restart in progress: stop() waits for it, then stops what it started. */
  let pendingStart: Promise<Postmaster> | undefined;
  let outage: EmbeddedPostgresOutage | undefined;
  const restartBudget = options.restarts ?? 5;
  const restartTimes: number[] = [];

  // If zapwire exits without stop() (process.exit after a fatal error), PostgreSQL still shuts down.
  const onExit = (): void => {
    if (!current.hasExited()) current.child.kill('SIGINT');
  };
  process.once('exit', onExit);

  const giveUp = (last: Pick<EmbeddedPostgresOutage, 'reason' | 'summary'>): void => {
    outage = { ...last, since: outage?.since ?? new Date(), state: 'failed' };
    notice(`${last.reason}; giving up after ${restartTimes.length} restart(s) in ten minutes`, 'warn');
    options.onGiveUp?.(last.reason);
  };

  /** The server exited on its own: start it again while the budget lasts, backing off 0.5, 1, 2, 4 s … */
  const supervise = async (postmaster: Postmaster): Promise<void> => {
    const exit = await postmaster.exited;
    if (stopping) return;
    let last = describeExit(exit, layout.logFile);
    const since = new Date();
    outage = { ...last, since, state: 'restarting' };
    notice(`${last.reason}; restarting it`, 'warn');
    killLeftovers(postmaster, layout);
    for (let attempt = 1; ; attempt++) {
      const now = Date.now();
      while (restartTimes.length > 0 && restartTimes[0]! < now - RESTART_WINDOW_MS) restartTimes.shift();
      if (restartTimes.length >= restartBudget) return giveUp(last);
      restartTimes.push(now);
      await sleep(Math.min(500 * 2 ** (attempt - 1), 8_000));
      if (stopping) return;
      try {
        pendingStart = start();
        current = await pendingStart;
      } catch (error) {
        pendingStart = undefined;
        last = {
          reason: (error as Error).message,
          summary: `the embedded PostgreSQL does not start again${diskFull(layout.logFile) ? ' (the disk is full)' : ''}`,
        };
        outage = { ...last, since, state: 'restarting' };
        notice(`restart ${attempt} of the embedded PostgreSQL failed: ${last.reason}`, 'warn');
        continue;
      }
      pendingStart = undefined;
      if (stopping) return;
      notice(
        `restarted the embedded PostgreSQL (pid ${current.pid}) after ${Date.now() - since.getTime()} ms`,
      );
      outage = undefined;
      void supervise(current);
      return;
    }
  };
  void supervise(current);

  return {
    url: urlOf(layout, password, DATABASE),
    get pid() {
      return current.pid;
    },
    major: binaries.major,
    initialised,
    logFile: layout.logFile,
    cluster: layout.cluster,
    outage: () => outage,
    stop() {
      stopping ??= (async () => {
        process.removeListener('exit', onExit);
        await pendingStart?.catch(() => undefined);
        const postmaster = current;
        if (!postmaster.hasExited()) {
          postmaster.child.kill('SIGINT');
          const timedOut = await Promise.race([
            postmaster.exited.then(() => false),
            new Promise<boolean>((r) => setTimeout(() => r(true), 10_000).unref()),
          ]);
          if (timedOut && !postmaster.hasExited()) {
            postmaster.child.kill('SIGQUIT');
            await Promise.race([postmaster.exited, sleep(3_000)]);
            if (!postmaster.hasExited()) postmaster.child.kill('SIGKILL');
            await postmaster.exited;
          }
        }
        rmSync(layout.ownerFile, { force: true });
      })();
      return stopping;
    },
  };
}
