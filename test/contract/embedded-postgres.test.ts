/**
 * The embedded PostgreSQL (the default store): first start and restart, what it exposes (a Unix socket in a
 * private directory, no TCP), files private to their owner, a crash of the zapwire that started it, a second
 * zapwire on the same directory, and a start-up failure worded as one line.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres/server.ts';
import { openPostgres } from '../../src/store/sql/postgres.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { isRunning } from '../../src/store/embedded-postgres/processes.ts';
import { runAndKillWriter, verifyAfterCrash } from './crash.ts';

const work = mkdtempSync(join(tmpdir(), 'zw-embedded-'));
// As root, the embedded PostgreSQL runs as its own user, which must be able to pass through.
chmodSync(work, 0o711);
afterAll(() => {
  // A failed test must not leave a server running: stop whatever still holds a cluster here.
  for (const name of readdirSync(work, { recursive: true }) as string[]) {
    if (!name.endsWith('postmaster.pid')) continue;
    const pid = Number(readFileSync(join(work, name), 'utf8').split('\n')[0]);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
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
});
