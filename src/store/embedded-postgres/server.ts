/**
 * A private native PostgreSQL that zapwire starts itself when no DATABASE_URL is given (the embedded
 * default). It is zapwire's child process, listens on a Unix socket in a 0700 directory only (no TCP),
 * keeps its data and log under the directory it is given, and is tuned for a small footprint.
 *
 * Lifecycle:
 * - first start: initdb into a temporary directory, renamed into place only when complete, so a crash
 *   during initialisation leaves nothing half-made;
 * - every start: a PostgreSQL left running by a zapwire that was killed (SIGKILL, OOM) is stopped, and a
 *   stale postmaster.pid whose pid now belongs to another process is removed; a zapwire that is still
 *   running on the same directory is refused;
 * - stop: fast shutdown (SIGINT: open transactions roll back, a checkpoint is written), SIGQUIT then
 *   SIGKILL if it does not exit in time. A process exit that skips stop() still sends SIGINT.
 * - as root: PostgreSQL refuses to run as root, so it runs as a dedicated system user (created when
 *   missing) that owns only the cluster and socket directories.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { findPostgresBinaries, type PostgresBinaries } from './binaries.ts';
import { EmbeddedPostgresError } from './errors.ts';
import {
  commandLineOf,
  identityOf,
  isAlive,
  isRunning,
  waitForExit,
  type ProcessIdentity,
} from './processes.ts';

/** The system user PostgreSQL runs as when zapwire runs as root. */
export const EMBEDDED_POSTGRES_USER = 'zapwire-pg';
const DATABASE = 'zapwire';
const ROLE = 'zapwire';
/** Unix socket paths are limited to 107 bytes; `.s.PGSQL.5432` takes 13 of them plus a slash. */
const MAX_SOCKET_DIRECTORY_LENGTH = 90;

export interface EmbeddedPostgresOptions {
  /** Holds the cluster, its socket, password and log; created when missing. */
  readonly directory: string;
  /** Default 40: the app's pool, LISTEN connections and a replay CLI beside it. */
  readonly maxConnections?: number;
  /** Extra server settings (`-c name=value`), applied after the defaults. */
  readonly settings?: Readonly<Record<string, string>>;
  /** One-line notices: initialised, recovered after a crash, stopped. */
  readonly notice?: (message: string) => void;
  readonly startTimeoutMs?: number;
  /**
   * When a running zapwire owns the server, connect to it instead of refusing (tools beside the server,
   * such as the replay CLI). The returned stop() then leaves it running.
   */
  readonly attach?: boolean;
}

export interface EmbeddedPostgres {
  /** A node-postgres connection string (Unix socket, password included). */
  readonly url: string;
  readonly pid: number;
  readonly major: number;
  /** True when this start ran initdb. */
  readonly initialised: boolean;
  readonly logFile: string;
  /** Fast shutdown; resolves when the server has exited. Safe to call twice. */
  stop(): Promise<void>;
}

interface Layout {
  readonly directory: string;
  readonly cluster: string;
  readonly socketDirectory: string;
  readonly passwordFile: string;
  readonly logFile: string;
  readonly ownerFile: string;
}

interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

function layoutOf(directory: string): Layout {
  const root = resolve(directory);
  let socketDirectory = join(root, 'run');
  if (socketDirectory.length > MAX_SOCKET_DIRECTORY_LENGTH) {
    // A deep DATA_DIR would overflow the socket path: use a short private directory instead, named after
    // the cluster so that a restart finds the same one.
    const tag = Buffer.from(root).toString('base64url').slice(-24);
    socketDirectory = join(tmpdir(), `zapwire-pg-${tag}`);
  }
  return {
    directory: root,
    cluster: join(root, 'cluster'),
    socketDirectory,
    passwordFile: join(root, 'password'),
    logFile: join(root, 'postgres.log'),
    ownerFile: join(root, 'owner.json'),
  };
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

function resolveRunAs(notice: (message: string) => void): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const ids = (): RunAs | undefined => {
    try {
      const uid = Number(execFileSync('id', ['-u', EMBEDDED_POSTGRES_USER], { stdio: 'pipe' }).toString());
      const gid = Number(execFileSync('id', ['-g', EMBEDDED_POSTGRES_USER], { stdio: 'pipe' }).toString());
      return { uid, gid };
    } catch {
      return undefined;
    }
  };
  const existing = ids();
  if (existing) return existing;
  try {
    execFileSync(
      'useradd',
      [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        EMBEDDED_POSTGRES_USER,
      ],
      { stdio: 'pipe' },
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new EmbeddedPostgresError(
      `PostgreSQL cannot run as root and the system user "${EMBEDDED_POSTGRES_USER}" could not be created (${reason}): create it, run zapwire as a non-root user, or set DATABASE_URL`,
    );
  }
  notice(
    `created the system user "${EMBEDDED_POSTGRES_USER}" to run the embedded PostgreSQL (PostgreSQL refuses to run as root)`,
  );
  const created = ids();
  if (!created)
    throw new EmbeddedPostgresError(
      `the system user "${EMBEDDED_POSTGRES_USER}" was created but cannot be looked up`,
    );
  return created;
}

/** The first directory on the way to `path` that the dedicated user cannot enter, if any. */
function blockingDirectory(path: string, runAs: RunAs): { dir: string; mode: number } | undefined {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const stat = statSync(dir);
    const bit = stat.uid === runAs.uid ? 0o100 : stat.gid === runAs.gid ? 0o010 : 0o001;
    if ((stat.mode & bit) === 0) return { dir, mode: stat.mode & 0o777 };
    if (dir === dirname(dir)) return undefined;
  }
}

function checkReachable(path: string, runAs: RunAs): void {
  const blocked = blockingDirectory(path, runAs);
  if (blocked) {
    throw new EmbeddedPostgresError(
      `the embedded PostgreSQL runs as "${EMBEDDED_POSTGRES_USER}" (zapwire runs as root) and cannot enter ${blocked.dir} (mode ${blocked.mode.toString(8)}): set DATA_DIR to a directory it can reach (e.g. /var/lib/zapwire), run zapwire as a non-root user, or set DATABASE_URL`,
    );
  }
}

/**
 * As root, the binaries may sit where the dedicated user cannot go (a checkout under /root). Then they are
 * copied once, with their libraries, to a root-owned world-readable directory.
 */
function reachableBinaries(binaries: PostgresBinaries, runAs: RunAs): PostgresBinaries {
  if (!blockingDirectory(binaries.postgres, runAs)) return binaries;
  const native = dirname(dirname(binaries.postgres));
  const stat = statSync(binaries.postgres);
  const target = join(
    '/var/lib/zapwire',
    `postgres-${binaries.major}-${stat.size}-${Math.round(stat.mtimeMs)}`,
  );
  if (!existsSync(join(target, 'bin', 'postgres'))) {
    rmSync(`${target}.partial`, { recursive: true, force: true });
    cpSync(native, `${target}.partial`, { recursive: true, verbatimSymlinks: true });
    execFileSync('chmod', ['-R', 'a+rX', `${target}.partial`]);
    renameSync(`${target}.partial`, target);
    chmodSync(dirname(target), 0o755);
  }
  const copied = {
    ...binaries,
    initdb: join(target, 'bin', 'initdb'),
    postgres: join(target, 'bin', 'postgres'),
  };
  checkReachable(copied.postgres, runAs);
  return copied;
}

function ensureDirectory(path: string, mode: number, runAs: RunAs | undefined): void {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
  if (runAs) chownSync(path, runAs.uid, runAs.gid);
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

/**
 * Makes sure no PostgreSQL is left on the cluster from an earlier run, and that no other zapwire uses it.
 */
/** The pid of a live zapwire that owns the server in this directory, if any. */
function liveOwner(layout: Layout): number | undefined {
  const owner = readOwner(layout.ownerFile);
  return owner && owner.pid !== process.pid && isAlive(owner) ? owner.pid : undefined;
}

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
  ensureDirectory(staging, 0o700, runAs);
  const pwfile = join(layout.directory, `initdb-password-${randomBytes(4).toString('hex')}`);
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

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const notice = options.notice ?? (() => undefined);
  const layout = layoutOf(options.directory);
  const runAs = resolveRunAs(notice);
  const found = await findPostgresBinaries();
  const binaries = runAs ? reachableBinaries(found, runAs) : found;
  // As root the dedicated user needs to pass through our directory (execute bit only, no listing).
  ensureDirectory(layout.directory, runAs ? 0o711 : 0o700, undefined);
  if (runAs) {
    // DATA_DIR is 0700; the dedicated user needs to pass through it (execute only, no listing).
    const parent = dirname(layout.directory);
    const parentStat = statSync(parent);
    if (parentStat.uid === process.getuid?.() && (parentStat.mode & 0o001) === 0) {
      chmodSync(parent, (parentStat.mode & 0o777) | 0o011);
    }
    checkReachable(layout.cluster, runAs);
  }
  ensureDirectory(layout.socketDirectory, 0o700, runAs);

  if (options.attach && liveOwner(layout) !== undefined) {
    const password = readFileSync(layout.passwordFile, 'utf8').trim();
    const [pidLine] = readFileSync(join(layout.cluster, 'postmaster.pid'), 'utf8').split('\n');
    return {
      url: urlOf(layout, password, DATABASE),
      pid: Number(pidLine),
      major: binaries.major,
      initialised: false,
      logFile: layout.logFile,
      stop: () => Promise.resolve(),
    };
  }
  await recover(layout, notice);
  // A first start interrupted during initdb leaves its password file; the next initdb makes a new one.
  for (const name of readdirSync(layout.directory)) {
    if (name.startsWith('initdb-password-')) rmSync(join(layout.directory, name), { force: true });
  }
  writeFileSync(layout.ownerFile, JSON.stringify(identityOf(process.pid)), { mode: 0o600 });

  let password: string;
  let initialised = false;
  if (!existsSync(join(layout.cluster, 'PG_VERSION'))) {
    password = randomBytes(24).toString('base64url');
    runInitdb(binaries, layout, password, runAs);
    writeFileSync(layout.passwordFile, `${password}\n`, { mode: 0o600 });
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
  const exitedPromise = new Promise<void>((resolveExit) =>
    child.once('exit', () => {
      exited = true;
      resolveExit();
    }),
  );
  // If zapwire exits without stop() (process.exit after a fatal error), PostgreSQL still shuts down.
  const onExit = (): void => {
    if (!exited) child.kill('SIGINT');
  };
  process.once('exit', onExit);

  try {
    await waitUntilReady(
      urlOf(layout, password, 'postgres'),
      child,
      layout.logFile,
      options.startTimeoutMs ?? 30_000,
    );
    await ensureDatabase(urlOf(layout, password, 'postgres'));
  } catch (error) {
    process.removeListener('exit', onExit);
    if (!exited) child.kill('SIGKILL');
    await exitedPromise;
    throw error instanceof EmbeddedPostgresError
      ? error
      : new EmbeddedPostgresError(`the embedded PostgreSQL did not start: ${(error as Error).message}`);
  }
  if (initialised) notice(`initialised the embedded PostgreSQL ${binaries.major} in ${layout.cluster}`);

  let stopping: Promise<void> | undefined;
  return {
    url: urlOf(layout, password, DATABASE),
    pid,
    major: binaries.major,
    initialised,
    logFile: layout.logFile,
    stop() {
      stopping ??= (async () => {
        process.removeListener('exit', onExit);
        if (!exited) {
          child.kill('SIGINT');
          const timedOut = await Promise.race([
            exitedPromise.then(() => false),
            new Promise<boolean>((r) => setTimeout(() => r(true), 10_000).unref()),
          ]);
          if (timedOut && !exited) {
            child.kill('SIGQUIT');
            await Promise.race([exitedPromise, new Promise((r) => setTimeout(r, 3_000).unref())]);
            if (!exited) child.kill('SIGKILL');
            await exitedPromise;
          }
        }
        rmSync(layout.ownerFile, { force: true });
      })();
      return stopping;
    },
  };
}
