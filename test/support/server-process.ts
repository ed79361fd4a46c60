/**
 * The compiled server as a user runs it (`node dist/src/main.js`, or `npm start`), for the start-up tests:
 * a process with the environment a test gives it (and PATH and HOME only), its output collected, waits for
 * /health, and a clean-up that ends every process a test file started, with any embedded PostgreSQL a
 * killed server left behind, and removes the data directories (with their clusters outside them, when the
 * server ran as root).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

export interface StartedServer {
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | null>;
}

export interface ServerProcesses {
  start(env: Record<string, string>, command?: 'node' | 'npm'): StartedServer;
  /** Ends every started process and its descendants, and removes the data directories it was given. */
  cleanUp(): Promise<void>;
}

/** `npm start`'s prestart, once per file, so that the timings of a test are the server's own. */
export function buildOnce(): void {
  execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { stdio: 'inherit' });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function waitHealthy(port: number, timeoutMs: number): Promise<number> {
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
export function descendants(root: number): number[] {
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

/** The postmaster's pid of the embedded PostgreSQL of a DATA_DIR (through the link when it is outside). */
export function embeddedServerPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, 'postgres', 'cluster', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

export function serverProcesses(): ServerProcesses {
  const children: ChildProcess[] = [];
  const dataDirs: string[] = [];
  return {
    start(env, command = 'node') {
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
    },
    async cleanUp() {
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
      // A killed postmaster's files are released once it has gone.
      await new Promise((r) => setTimeout(r, 200));
      for (const dataDir of dataDirs) {
        removeEmbeddedPostgres(join(dataDir, 'postgres'));
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
