/**
 * Slow-clients bench (`npm run bench -- slow-clients`): the slow-body attack of issue #22 against
 * `node dist/src/main.js` (what `npm start` runs) with a file-descriptor limit of BENCH_SLOW_FD_LIMIT (600).
 * BENCH_SLOW_CONNECTIONS connections (700) from 127.0.0.1 each announce a 100 kB body and send one byte
 * a second, half of them with a wrong key (to POST /instance/create), half to POST /manager/session,
 * which reads any body; meanwhile another client (127.0.0.2) asks GET /health every 500 ms. After
 * BENCH_SLOW_SECONDS (45) it reports how many connections the server had cut, and when, and how many
 * health checks were answered. The server runs with its defaults, on a fresh database on
 * BENCH_DATABASE_URL's server. BENCH_SLOW_ROOT runs another checkout's build instead (before/after).
 */
import { serverEnv } from '../support/server-env.ts';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/support/cluster.ts';
import { createTestDatabase } from '../../test/support/postgres.ts';
import { removeEmbeddedPostgres } from '../../src/store/embedded-postgres/layout.ts';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const ROOT = resolve(env['BENCH_SLOW_ROOT'] ?? join(here, '..', '..'));
const CONNECTIONS = Number(env['BENCH_SLOW_CONNECTIONS'] ?? 700);
const FD_LIMIT = Number(env['BENCH_SLOW_FD_LIMIT'] ?? 600);
const SECONDS = Number(env['BENCH_SLOW_SECONDS'] ?? 45);
const SERVER_URL = env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One GET /health from 127.0.0.2: its status (or error code) and how long it took. */
function health(port: number): Promise<{ status: number | string; ms: number }> {
  const started = Date.now();
  return new Promise((resolveHealth) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/health', localAddress: '127.0.0.2', agent: false, timeout: 3_000 },
      (res) => {
        res.resume();
        res.on('end', () => resolveHealth({ status: res.statusCode ?? 0, ms: Date.now() - started }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (error: NodeJS.ErrnoException) =>
      resolveHealth({ status: error.code ?? error.message, ms: Date.now() - started }),
    );
    req.end();
  });
}

export default async function slowClientsBench(): Promise<void> {
  const build = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--if-stale'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  if (build.status !== 0) throw new Error('build failed');
  const database = await createTestDatabase(SERVER_URL);
  const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-slow-'));
  const port = await freePort();
  const server = spawn(
    'sh',
    ['-c', 'ulimit -n "$1" && exec "$2" dist/src/main.js', 'sh', String(FD_LIMIT), process.execPath],
    {
      cwd: ROOT,
      env: serverEnv({
        port,
        dataDir,
        databaseUrl: database.url,
        adminKey: 'bench-slow-admin-key-0123456789',
      }),
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  server.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')));
  try {
    for (let i = 0; (await health(port)).status !== 200; i++) {
      if (server.exitCode !== null || i > 240) throw new Error(`the server did not start:\n${log}`);
      await sleep(250);
    }
    const limit = /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/limits`, 'utf8'))?.[1];

    const started = Date.now();
    const closedAt: number[] = [];
    const sockets = Array.from({ length: CONNECTIONS }, (_, i) => {
      const socket = connect({ port, host: '127.0.0.1' });
      const keyed = i % 2 === 0;
      const trickle = setInterval(() => socket.writable && socket.write('x'), 1_000);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearInterval(trickle);
        closedAt.push(Date.now() - started);
      });
      socket.write(
        `POST ${keyed ? '/instance/create' : '/manager/session'} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n${keyed ? 'apikey: wrong-key-0123456789\r\n' : ''}\r\n`,
      );
      return socket;
    });
    const checks: Array<{ status: number | string; ms: number }> = [];
    while (Date.now() - started < SECONDS * 1_000) {
      checks.push(await health(port));
      await sleep(500);
    }
    for (const socket of sockets) socket.destroy();
    const emfile = (log.match(/EMFILE/g) ?? []).length;
    const by = (ms: number): number => closedAt.filter((t) => t <= ms).length;
    const answered = checks.filter((c) => c.status === 200);
    console.log(
      `slow clients: ${CONNECTIONS} connections sending a body one byte a second, fd limit ${limit}, ${SECONDS} s (${ROOT === resolve(here, '..', '..') ? 'this checkout' : ROOT})`,
    );
    console.table({
      'cut within 1 s': by(1_000),
      'cut within 10 s': by(10_000),
      [`cut within ${SECONDS} s (all the attack lasted)`]: by(SECONDS * 1_000 - 1),
      'last cut, ms': closedAt.length ? Math.max(...closedAt.filter((t) => t < SECONDS * 1_000)) : '-',
      '/health from another client: answered': `${answered.length} of ${checks.length}`,
      '/health slowest answer, ms': answered.length ? Math.max(...answered.map((c) => c.ms)) : '-',
      '/health failures':
        [...new Set(checks.filter((c) => c.status !== 200).map((c) => String(c.status)))].join(', ') ||
        'none',
      'EMFILE in the server log': emfile,
    });
  } finally {
    server.kill('SIGTERM');
    await new Promise<void>((r) => {
      if (server.exitCode !== null) return r();
      const timer = setTimeout(() => (server.kill('SIGKILL'), r()), 15_000);
      server.once('exit', () => (clearTimeout(timer), r()));
    });
    await database.drop().catch(() => undefined);
    removeEmbeddedPostgres(join(dataDir, 'postgres'));
    rmSync(dataDir, { recursive: true, force: true });
  }
}
