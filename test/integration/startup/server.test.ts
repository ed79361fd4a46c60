/**
 * The server as a user runs it: `npm start` with no environment starts on the embedded PostgreSQL, prints
 * the generated admin key once, keeps it across restarts, answers /health, refuses a bad configuration,
 * stops cleanly on SIGTERM (sent to npm itself, as a supervisor would) leaving no process behind, and after
 * a SIGKILL starts again with every acknowledged write.
 */
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRunning } from '../../../src/store/embedded-postgres/processes.ts';
import {
  buildOnce,
  descendants,
  embeddedServerPid,
  freePort,
  serverProcesses,
  waitHealthy,
} from '../../support/server-process.ts';

const servers = serverProcesses();
const start = servers.start;
// A failed test must not leave a server behind.
afterAll(() => servers.cleanUp());
beforeAll(buildOnce, 180_000);

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
    // As root too: the embedded PostgreSQL's own user never needs to enter it.
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
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
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 240_000);

  it('refuses a wrong configuration, naming the variable', async () => {
    const bad = start({ PORT: 'eighty', DATA_DIR: mkdtempSync(join(tmpdir(), 'zw-bad-')) });
    expect(await bad.exited).toBe(78);
    expect(bad.output()).toMatch(/PORT="eighty": expected a whole number/);
  });
});
