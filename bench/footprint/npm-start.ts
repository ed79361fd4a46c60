/**
 * The first ten minutes (`BENCH_FOOTPRINT=npm-start npm run bench -- footprint`): what a new user meets
 * with the README's two commands, `npm install && npm start`, measured from outside through npm itself:
 *
 * - `npm install` in a fresh clone (when BENCH_CLONE_FROM is given);
 * - the first `npm start` → first 200 on GET /health (the build of dist/ and initdb included), with the
 *   build's own time as the build script prints it;
 * - the idle process tree under the npm process (npm + node + every PostgreSQL process), summed RSS, read
 *   BENCH_IDLE_AT_MS after the spawn with one instance created (the median of five readings 1 s apart);
 * - restart: SIGTERM to npm, every process of the tree gone, `npm start` again → 200 on /health.
 *
 * It measures any checkout, so the same code measures a clone of an older commit ("before"). Run it as the
 * user to measure (root in /root, or an ordinary user in their home).
 *
 * Settings (environment):
 *   BENCH_CHECKOUT     the checkout to run `npm start` in (default: this one; then DATA_DIR is a fresh
 *                      temporary directory and dist/ is rebuilt, so the first start is a first start)
 *   BENCH_CLONE_FROM   clone this repository into BENCH_CHECKOUT (which must not exist) and `npm install`
 *                      there first; DATA_DIR is then the default ./data of the clone
 *   BENCH_CLONE_REF    the commit or branch to check out in the clone
 *   BENCH_STARTS       restarts measured (default 3)
 *   BENCH_IDLE_AT_MS   when the idle tree is read, after the spawn (default 20000)
 *   BENCH_KEEP_DATA=1  keep the clone and the data
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';
import { byRole, descendantsOf, treeMemory, type TreeMemory } from './process-tree.ts';
import { freePort, root } from './server.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const s = (ms: number) => (ms / 1000).toFixed(2);
const mb = (kb: number | undefined) => (kb === undefined ? '–' : (kb / 1024).toFixed(1));

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw ? Number(raw) : fallback;
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name}="${raw}": expected a number`);
  return value;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function run(command: string, args: readonly string[], cwd: string): number {
  const t0 = performance.now();
  const result = spawnSync(command, args, { cwd, stdio: 'inherit', env: userEnvironment() });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status}`);
  return performance.now() - t0;
}

/** What a login shell gives a user, and nothing of this process's own configuration. */
function userEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'TERM', 'TMPDIR'];
  const env: NodeJS.ProcessEnv = {};
  for (const name of keep) if (process.env[name] !== undefined) env[name] = process.env[name];
  return { ...env, ...extra };
}

interface NpmStart {
  readonly child: ChildProcess;
  readonly spawnedAt: number;
  output(): string;
  readonly exited: Promise<void>;
}

function npmStart(checkout: string, env: Record<string, string>): NpmStart {
  const child = spawn('npm', ['start'], {
    cwd: checkout,
    env: userEnvironment(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, spawnedAt: performance.now(), output: () => out, exited };
}

async function untilHealthy(url: string, started: NpmStart): Promise<number> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (started.child.exitCode !== null || started.child.signalCode !== null) {
      throw new Error(`npm start exited before /health answered:\n${started.output().slice(-3000)}`);
    }
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.status === 200) return performance.now() - started.spawnedAt;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`no 200 on ${url}/health within 180 s`);
    await sleep(25);
  }
}

/** SIGTERM to npm (what a supervisor or Ctrl-C sends); resolves with the ms until the whole tree is gone. */
async function stop(started: NpmStart): Promise<number> {
  const pid = started.child.pid!;
  const tree = descendantsOf(pid);
  const t0 = performance.now();
  started.child.kill('SIGTERM');
  await started.exited;
  const alive = (p: number): boolean => {
    try {
      process.kill(p, 0);
      return !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 30_000;
  while (tree.some(alive)) {
    if (Date.now() > deadline) {
      for (const p of tree.filter(alive)) process.kill(p, 'SIGKILL');
      throw new Error('the tree under npm start outlived SIGTERM by 30 s (killed)');
    }
    await sleep(25);
  }
  return performance.now() - t0;
}

async function createInstance(url: string, dataDir: string): Promise<void> {
  const key = readFileSync(join(dataDir, 'global-api-key'), 'utf8').trim();
  const response = await fetch(`${url}/instance/create`, {
    method: 'POST',
    headers: { apikey: key, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'first-instance' }),
  });
  if (response.status !== 201)
    throw new Error(`create answered ${response.status}: ${await response.text()}`);
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export async function benchNpmStart(): Promise<void> {
  const cloneFrom = process.env['BENCH_CLONE_FROM'];
  const checkout = resolve(process.env['BENCH_CHECKOUT'] ?? root);
  const starts = Math.max(1, Math.round(setting('BENCH_STARTS', 3)));
  const idleAtMs = setting('BENCH_IDLE_AT_MS', 20_000);
  const keep = process.env['BENCH_KEEP_DATA'] === '1';
  const loadBefore = loadavg();

  let installMs: number | undefined;
  if (cloneFrom) {
    if (existsSync(checkout)) throw new Error(`BENCH_CHECKOUT ${checkout} exists: give a new directory`);
    run('git', ['clone', '--quiet', cloneFrom, checkout], process.cwd());
    const ref = process.env['BENCH_CLONE_REF'];
    if (ref) run('git', ['checkout', '--quiet', ref], checkout);
    console.log(`  npm install in ${checkout} ...`);
    installMs = run('npm', ['install'], checkout);
    console.log(`  npm install: ${s(installMs)} s`);
  } else {
    // The first start of a checkout builds dist/.
    rmSync(join(checkout, 'dist', '.build-stamp'), { force: true });
  }
  const scratch = cloneFrom ? undefined : mkdtempSync(join(tmpdir(), 'zapwire-npm-start-'));
  const dataDir = scratch ? join(scratch, 'data') : join(checkout, 'data');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = { PORT: String(port), ...(scratch ? { DATA_DIR: dataDir } : {}) };

  try {
    const first = npmStart(checkout, env);
    let firstMs: number;
    try {
      firstMs = await untilHealthy(url, first);
    } catch (error) {
      // What a new user meets when it does not start: the time it took to fail and the reason.
      const failedAfter = performance.now() - first.spawnedAt;
      const reason = first
        .output()
        .split('\n')
        .filter((line) => /zapwire|error|fail/i.test(line))
        .slice(-3)
        .join(' / ');
      console.log(
        `\nThe first ten minutes: ${checkout} as ${userInfo().username} (uid ${process.getuid?.()})\n` +
          table(
            ['step', 'measured'],
            [
              ...(installMs !== undefined ? [['`npm install`', `${s(installMs)} s`]] : []),
              ['first `npm start` → `/health`', `fails after ${s(failedAfter)} s: ${reason}`],
            ],
          ),
      );
      if (first.child.exitCode === null) await stop(first);
      throw error;
    }
    const built = /(?:compiled|built) in ([\d.]+) s/.exec(first.output())?.[1];
    console.log(`  first npm start → /health: ${s(firstMs)} s (build ${built ?? '?'} s)`);
    await createInstance(url, dataDir);
    const wait = first.spawnedAt + idleAtMs - performance.now();
    if (wait > 0) await sleep(wait);
    const readings: TreeMemory[] = [];
    for (let i = 0; i < 5; i++) {
      if (i > 0) await sleep(1_000);
      readings.push(treeMemory(first.child.pid!));
    }
    readings.sort((a, b) => a.rssKb - b.rssKb);
    const idle = readings[2]!;
    const stopMs = [await stop(first)];

    const restartMs: number[] = [];
    for (let i = 0; i < starts; i++) {
      const again = npmStart(checkout, env);
      restartMs.push(await untilHealthy(url, again));
      stopMs.push(await stop(again));
    }

    const roles = byRole(idle);
    const postgres = roles.filter((r) => r.role.startsWith('postgres'));
    const postgresKb = postgres.reduce((sum, r) => sum + r.rssKb, 0);
    const postgresCount = postgres.reduce((sum, r) => sum + r.count, 0);
    const others = roles.filter((r) => !r.role.startsWith('postgres'));
    console.log('');
    console.log(
      `The first ten minutes: ${checkout} as ${userInfo().username} (uid ${process.getuid?.()}), ${cpus().length} cores`,
    );
    console.log(
      table(
        ['step', 'measured'],
        [
          ...(installMs !== undefined ? [['`npm install`', `${s(installMs)} s`]] : []),
          ['first `npm start` → `/health`', `${s(firstMs)} s, of which the build ${built ?? '?'} s`],
          [`restart → \`/health\` (median of ${starts})`, `${s(median(restartMs))} s`],
          [
            `idle tree under \`npm start\`, ${idleAtMs / 1000} s after start, 1 instance created`,
            `${mb(idle.rssKb)} MB RSS (${[
              ...others.map((r) => `${r.role} ${mb(r.rssKb)}`),
              `PostgreSQL ${mb(postgresKb)} in ${postgresCount} processes`,
            ].join(', ')}); PSS ${mb(idle.pssKb)} MB`,
          ],
          ['SIGTERM to npm → whole tree gone (median)', `${s(median(stopMs))} s`],
        ],
      ),
    );
    console.log('');
    console.log('Idle tree by process (MB)');
    console.log(
      table(
        ['process', 'n', 'RSS', 'PSS'],
        roles.map((r) => [r.role, String(r.count), mb(r.rssKb), mb(r.pssKb)]),
      ),
    );
    console.log(
      `\nrestarts: ${restartMs.map(s).join(', ')} s; load average ${loadBefore.map((l) => l.toFixed(1)).join(' ')} before, ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} after`,
    );
  } finally {
    if (!keep) {
      removeEmbeddedPostgres(join(dataDir, 'postgres'));
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      if (cloneFrom) rmSync(checkout, { recursive: true, force: true });
    } else {
      console.log(`  kept ${cloneFrom ? checkout : scratch}`);
    }
  }
}
