/**
 * The server as a user runs it: `npm start` with no environment starts on the embedded PostgreSQL, prints
 * the generated admin key once, keeps it across restarts, answers /health, refuses a bad configuration,
 * stops cleanly on SIGTERM (sent to npm itself, as a supervisor would) leaving no process behind, and after
 * a SIGKILL starts again with every acknowledged write.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRunning } from '../../../src/store/embedded-postgres/processes.ts';

const children: ChildProcess[] = [];
const dataDirs: string[] = [];
// A failed test must not leave a server behind: end each started process with all its descendants, and
// any embedded PostgreSQL left running by a server this file killed.
afterAll(() => {
  const pids = children.flatMap((child) => (child.pid ? [child.pid, ...descendants(child.pid)] : []));
  for (const dataDir of dataDirs) {
    try {
      pids.push(embeddedServerPid(dataDir));
    } catch {
      // never started, or stopped cleanly
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

beforeAll(() => {
  // What `npm start` does first (prestart); done here once so the timings below are the server's own.
  execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { stdio: 'inherit' });
}, 180_000);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(env: Record<string, string>, command: 'node' | 'npm' = 'node'): Started {
  if (env['DATA_DIR']) dataDirs.push(env['DATA_DIR']);
  const [file, args] =
    command === 'npm' ? ['npm', ['start', '--silent']] : [process.execPath, ['dist/src/main.js']];
  const child = spawn(file, args, {
    cwd: process.cwd(),
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function waitHealthy(port: number, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`);
      if (r.ok) return Date.now() - started;
    } catch {
      // not up yet
    }
    if (Date.now() - started > timeoutMs) throw new Error(`no /health within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The running descendants of a process (npm's server, the server's PostgreSQL and its workers). */
function descendants(root: number): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,stat='], { encoding: 'utf8' });
  const rows = out
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([, , stat]) => !stat?.startsWith('Z'))
    .map(([pid, ppid]) => [Number(pid), Number(ppid)] as const);
  const found: number[] = [];
  const walk = (parent: number): void => {
    for (const [pid, ppid] of rows) {
      if (ppid === parent) {
        found.push(pid);
        walk(pid);
      }
    }
  };
  walk(root);
  return found;
}

function embeddedServerPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, 'postgres', 'cluster', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

describe('server start-up', () => {
  it('starts with no configuration, keeps its generated key, and shuts down cleanly', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zw-start-'));
    const port = await freePort();
    const first = start({ DATA_DIR: dataDir, PORT: String(port) });
    await waitHealthy(port, 90_000);
    const key = /GLOBAL_API_KEY=([0-9a-f]{48})/.exec(first.output())?.[1];
    expect(key).toBeDefined();
    const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', store: 'embedded-postgres' });
    expect(statSync(dataDir).mode & 0o077 & ~0o011).toBe(0);
    expect(statSync(join(dataDir, 'global-api-key')).mode & 0o777).toBe(0o600);

    const created = await fetch(`http://127.0.0.1:${port}/instance/create`, {
      method: 'POST',
      headers: { apikey: key!, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'survivor', token: 'survivor-token-1' }),
    });
    expect(created.status).toBe(201);
    const postgresPid = embeddedServerPid(dataDir);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(isRunning(postgresPid)).toBe(false);

    const second = start({ DATA_DIR: dataDir, PORT: String(port) });
    await waitHealthy(port, 90_000);
    expect(second.output()).not.toContain('GLOBAL_API_KEY=');
    const status = await fetch(`http://127.0.0.1:${port}/instance/status`, {
      headers: { apikey: 'survivor-token-1' },
    });
    expect(status.status).toBe(200);
    const all = await fetch(`http://127.0.0.1:${port}/instance/all`, { headers: { apikey: key! } });
    expect(((await all.json()) as Array<{ name: string }>).map((i) => i.name)).toEqual(['survivor']);
    expect(second.output()).not.toContain('survivor-token-1');
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 240_000);

  it('SIGTERM to npm start (the top process) stops the server and its PostgreSQL within 15 s', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zw-npm-'));
    const port = await freePort();
    const npm = start({ DATA_DIR: dataDir, PORT: String(port) }, 'npm');
    await waitHealthy(port, 90_000);
    // npm → node (the server) → postgres and its workers: no shell between npm and the server.
    const tree = descendants(npm.child.pid!);
    expect(tree.length).toBeGreaterThanOrEqual(3);
    const signalled = Date.now();
    npm.child.kill('SIGTERM');
    await npm.exited;
    for (;;) {
      const left = tree.filter((pid) => isRunning(pid));
      if (left.length === 0) break;
      if (Date.now() - signalled > 15_000) {
        throw new Error(`still running 15 s after SIGTERM: ${left.join(', ')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
  }, 240_000);

  it('after a SIGKILL, the next start recovers the embedded database with every acknowledged write', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zw-kill-'));
    const port = await freePort();
    const env = { DATA_DIR: dataDir, PORT: String(port), GLOBAL_API_KEY: 'kill-test-admin-key-0123456789' };
    const first = start(env);
    await waitHealthy(port, 90_000);
    const names: string[] = [];
    for (let i = 0; i < 20; i++) {
      const created = await fetch(`http://127.0.0.1:${port}/instance/create`, {
        method: 'POST',
        headers: { apikey: env.GLOBAL_API_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `acked-${i}` }),
      });
      expect(created.status).toBe(201);
      names.push(`acked-${i}`);
    }
    const orphan = embeddedServerPid(dataDir);
    first.child.kill('SIGKILL');
    await first.exited;
    // Nothing could stop it: the PostgreSQL of the killed server is still running.
    expect(isRunning(orphan)).toBe(true);

    const second = start(env);
    await waitHealthy(port, 90_000);
    expect(second.output()).toMatch(/left running by a zapwire that did not shut down/);
    expect(isRunning(orphan)).toBe(false);
    const all = await fetch(`http://127.0.0.1:${port}/instance/all`, {
      headers: { apikey: env.GLOBAL_API_KEY },
    });
    expect(((await all.json()) as Array<{ name: string }>).map((i) => i.name).sort()).toEqual(
      [...names].sort(),
    );
    // Each read model rebuilt from the recovered log equals the live one.
    for (const projection of ['instances', 'instance_logs']) {
      const rebuilt = await fetch(`http://127.0.0.1:${port}/admin/projections/${projection}/rebuild`, {
        method: 'POST',
        headers: { apikey: env.GLOBAL_API_KEY },
      });
      const report = (await rebuilt.json()) as { equal: boolean; tables: unknown };
      expect(report.equal, `${projection}: ${JSON.stringify(report.tables)}`).toBe(true);
    }
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 240_000);

  it('refuses a wrong configuration, naming the variable', async () => {
    const bad = start({ PORT: 'eighty', DATA_DIR: mkdtempSync(join(tmpdir(), 'zw-bad-')) });
    expect(await bad.exited).toBe(78);
    expect(bad.output()).toMatch(/PORT="eighty": expected a whole number/);
  });
});
