/**
 * One PostgreSQL server for the whole test run, unless TEST_DATABASE_URL names one: the embedded PostgreSQL
 * that zapwire starts by default, started through zapwire's own code. Every test file creates its own
 * database on it (test/support/postgres.ts), so files do not share state.
 */
import { mkdtempSync, rmSync } from 'node:fs';
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
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (directory) rmSync(directory, { recursive: true, force: true });
}
