/**
 * One PostgreSQL server for the whole test run, unless TEST_DATABASE_URL names one: the embedded PostgreSQL
 * that zapwire starts by default, started through zapwire's own code. Every test file creates its own
 * database on it (test/support/postgres.ts), so files do not share state.
 *
 * The tests of a PostgreSQL run by the machine (EXTERNAL_TEST_DATABASE_URL, SINK_TEST_PG_URL) use
 * 127.0.0.1:5432 when something listens there; otherwise this server stands in for it, so that a machine
 * without a PostgreSQL of its own runs the whole suite (the same adapter, on one server instead of two).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/store/embedded-postgres/server.ts';

let server: EmbeddedPostgres | undefined;
let directory: string | undefined;

export async function setup(): Promise<void> {
  if (process.env['TEST_DATABASE_URL']) return;
  directory = mkdtempSync(join(tmpdir(), 'zapwire-test-pg-'));
  server = await startEmbeddedPostgres({
    directory,
    // Several test files at once, each with an app whose pool holds up to 10 connections.
    maxConnections: 300,
    settings: { shared_buffers: '128MB', fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  });
  // The workers are started after this and inherit the environment.
  process.env['TEST_DATABASE_URL'] = server.url.replace('/zapwire?', '/postgres?');
  if (!process.env['EXTERNAL_TEST_DATABASE_URL'] && !(await listens(5432))) {
    process.env['EXTERNAL_TEST_DATABASE_URL'] = process.env['TEST_DATABASE_URL'];
    process.env['SINK_TEST_PG_URL'] ??= process.env['TEST_DATABASE_URL'];
  }
}

function listens(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (directory) rmSync(directory, { recursive: true, force: true });
}
