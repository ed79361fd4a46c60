/**
 * `npm start` with no environment: the server starts on the embedded store, prints the generated admin
 * key once, keeps it across restarts, answers /health, refuses a bad configuration, and stops cleanly on
 * SIGTERM without losing an acknowledged write.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function start(env: Record<string, string>): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
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
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('server start-up', () => {
  it('starts with no configuration, keeps its generated key, and shuts down cleanly', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zw-start-'));
    const port = await freePort();
    const first = start({ DATA_DIR: dataDir, PORT: String(port) });
    await waitHealthy(port, 45_000);
    const key = /GLOBAL_API_KEY=([0-9a-f]{48})/.exec(first.output())?.[1];
    expect(key).toBeDefined();
    const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', store: 'pglite' });

    const created = await fetch(`http://127.0.0.1:${port}/instance/create`, {
      method: 'POST',
      headers: { apikey: key!, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'survivor', token: 'survivor-token-1' }),
    });
    expect(created.status).toBe(201);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = start({ DATA_DIR: dataDir, PORT: String(port) });
    await waitHealthy(port, 45_000);
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
  }, 150_000);

  it('refuses a wrong configuration, naming the variable', async () => {
    const bad = start({ PORT: 'eighty', DATA_DIR: mkdtempSync(join(tmpdir(), 'zw-bad-')) });
    expect(await bad.exited).toBe(78);
    expect(bad.output()).toMatch(/PORT="eighty": expected a whole number/);
  });
});
