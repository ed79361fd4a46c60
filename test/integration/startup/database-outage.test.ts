/**
 * The embedded PostgreSQL dies under a running server (killed; or it cannot start again, as when a full
 * disk keeps it from recovering). While zapwire restarts it, requests answer 503 with Retry-After, not
 * 500, and /health says why; once it is back, writes and the projections go on. Past the restart budget
 * (EMBEDDED_POSTGRES_RESTARTS) the server exits with 1 so that its supervisor restarts both, and the next
 * start finds every acknowledged write.
 */
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRunning } from '../../../src/store/embedded-postgres/processes.ts';
import {
  buildOnce,
  embeddedServerPid,
  freePort,
  serverProcesses,
  waitHealthy,
} from '../../support/server-process.ts';

const ADMIN_KEY = 'database-outage-admin-key-0123456789';
const servers = serverProcesses();
afterAll(() => servers.cleanUp());
beforeAll(buildOnce, 180_000);

function create(port: number, name: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/instance/create`, {
    method: 'POST',
    headers: { apikey: ADMIN_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
}

async function names(port: number): Promise<string[]> {
  const all = await fetch(`http://127.0.0.1:${port}/instance/all`, { headers: { apikey: ADMIN_KEY } });
  return ((await all.json()) as Array<{ name: string }>).map((i) => i.name).sort();
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Makes the cluster unstartable (PostgreSQL refuses a data directory of another major version). */
function blockRestarts(dataDir: string): () => void {
  const file = join(dataDir, 'postgres', 'cluster', 'PG_VERSION');
  const kept = readFileSync(file, 'utf8');
  writeFileSync(file, '9\n');
  return () => writeFileSync(file, kept);
}

describe('the embedded PostgreSQL dies under a running server', () => {
  it('answers 503 with Retry-After while it restarts the database, says why on /health, then goes on', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zw-outage-'));
    const port = await freePort();
    const server = servers.start({
      DATA_DIR: dataDir,
      PORT: String(port),
      GLOBAL_API_KEY: ADMIN_KEY,
      EMBEDDED_POSTGRES_RESTARTS: '10',
    });
    await waitHealthy(port, 90_000);
    expect((await create(port, 'before')).status).toBe(201);

    const postmaster = embeddedServerPid(dataDir);
    const unblock = blockRestarts(dataDir);
    try {
      process.kill(postmaster, 'SIGKILL');
      const health = await until(
        '/health reporting the outage',
        async () => {
          const r = await fetch(`http://127.0.0.1:${port}/health`);
          const body = (await r.json()) as { error?: string };
          return r.status === 503 && /zapwire is restarting it/.test(body.error ?? '') ? r : undefined;
        },
        20_000,
      );
      expect(health.headers.get('retry-after')).toBe('5');

      const during = await create(port, 'during');
      expect(during.status).toBe(503);
      expect(during.headers.get('retry-after')).toBe('5');
      expect(((await during.json()) as { error: { code: string } }).error.code).toBe('ZW_ERR_UNAVAILABLE');
      const read = await fetch(`http://127.0.0.1:${port}/instance/all`, { headers: { apikey: ADMIN_KEY } });
      expect(read.status).toBe(503);
    } finally {
      unblock();
    }

    await waitHealthy(port, 60_000);
    expect(server.output()).toMatch(/the embedded PostgreSQL was killed \(SIGKILL\).*; restarting it/);
    await until(
      'the restart logged',
      async () => (/restarted the embedded PostgreSQL \(pid \d+\)/.test(server.output()) ? true : undefined),
      10_000,
    );
    expect(isRunning(postmaster)).toBe(false);
    expect((await create(port, 'after')).status).toBe(201);
    // The projections went on: the read model has the instance created after the restart.
    await until(
      'the read model with both instances',
      async () => ((await names(port)).join() === 'after,before' ? true : undefined),
      20_000,
    );
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  }, 240_000);

  it('past EMBEDDED_POSTGRES_RESTARTS exits with 1 for its supervisor; the next start has every write', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zw-outage-'));
    const port = await freePort();
    const env = { DATA_DIR: dataDir, PORT: String(port), GLOBAL_API_KEY: ADMIN_KEY };
    const first = servers.start({ ...env, EMBEDDED_POSTGRES_RESTARTS: '0' });
    await waitHealthy(port, 90_000);
    expect((await create(port, 'kept')).status).toBe(201);

    const postmaster = embeddedServerPid(dataDir);
    process.kill(postmaster, 'SIGKILL');
    const code = await Promise.race([
      first.exited,
      new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000)),
    ]);
    expect(code).toBe(1);
    expect(first.output()).toMatch(/exiting with 1 so that a supervisor restarts zapwire/);

    // What the supervisor does next.
    const second = servers.start(env);
    await waitHealthy(port, 90_000);
    expect(await names(port)).toEqual(['kept']);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 240_000);
});
