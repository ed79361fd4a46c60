/**
 * The usual VPS setup: the compiled server started by root with DATA_DIR in a directory closed to other
 * users (a 0700 directory, a checkout under /root). It starts with nothing to configure, DATA_DIR stays
 * 0700, one line says where the database is, the replay CLI beside the running server finds the same
 * database, and a restart keeps everything. Run as another user, the same test proves that nothing moves.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildOnce,
  freePort,
  serverProcesses,
  waitHealthy,
  type StartedServer,
} from '../../support/server-process.ts';

const ADMIN_KEY = 'closed-data-dir-admin-key-0123456789';
const asRoot = process.getuid?.() === 0;
const servers = serverProcesses();
const holders: string[] = [];
afterAll(async () => {
  await servers.cleanUp();
  for (const holder of holders) rmSync(holder, { recursive: true, force: true });
});
beforeAll(buildOnce, 180_000);

interface Started {
  readonly server: StartedServer;
  readonly dataDir: string;
  readonly holder: string;
  readonly port: number;
  readonly env: Record<string, string>;
}

/** A first start with DATA_DIR in a fresh 0700 directory under `parent`, and one instance created. */
async function startIn(parent: string): Promise<Started> {
  const holder = mkdtempSync(join(parent, 'zw-closed-'));
  holders.push(holder);
  expect(statSync(holder).mode & 0o777).toBe(0o700);
  const dataDir = join(holder, 'data');
  const port = await freePort();
  const env = { DATA_DIR: dataDir, PORT: String(port), GLOBAL_API_KEY: ADMIN_KEY };
  const server = servers.start(env);
  await waitHealthy(port, 90_000);
  const where = server.output().match(/the embedded PostgreSQL keeps its database in ([^ ]+)/g) ?? [];
  if (asRoot) {
    expect(where).toHaveLength(1);
    expect(where[0]).toMatch(/in \/var\/lib\/zapwire-pg\/data-[0-9a-f]{12}$/);
  } else {
    expect(where).toEqual([]);
  }
  expect(statSync(dataDir).mode & 0o777).toBe(0o700);
  expect(statSync(holder).mode & 0o777).toBe(0o700);
  const created = await fetch(`http://127.0.0.1:${port}/instance/create`, {
    method: 'POST',
    headers: { apikey: ADMIN_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'closed-dir' }),
  });
  expect(created.status).toBe(201);
  return { server, dataDir, holder, port, env };
}

describe('DATA_DIR in a directory closed to other users', () => {
  it('starts with DATA_DIR under the home directory (/root, as root), keeps it 0700 and says where the database is', async () => {
    const { server } = await startIn(homedir());
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  }, 240_000);

  it('starts with DATA_DIR under a 0700 directory; `npm run replay` beside it and a restart find the same database', async () => {
    const { server, dataDir, port, env } = await startIn(tmpdir());
    // `npm run replay` beside the running server reads the same database through DATA_DIR.
    const replay = spawnSync(process.execPath, ['dist/src/cli/replay.js', 'closed-dir'], {
      env: { PATH: process.env['PATH'] ?? '', DATA_DIR: dataDir },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(replay.stderr).toBe('');
    expect(replay.stdout).toMatch(/InstanceCreated/);
    expect(replay.status).toBe(0);

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const second = servers.start(env);
    await waitHealthy(port, 90_000);
    const all = await fetch(`http://127.0.0.1:${port}/instance/all`, { headers: { apikey: ADMIN_KEY } });
    expect(((await all.json()) as Array<{ name: string }>).map((i) => i.name)).toEqual(['closed-dir']);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 240_000);
});
