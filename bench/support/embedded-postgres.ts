/** The embedded PostgreSQL as zapwire starts it by default, in a throw-away directory, for benchmarks. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres/server.ts';

export interface BenchEmbeddedPostgres {
  readonly url: string;
  close(): Promise<void>;
}

export async function startBenchEmbeddedPostgres(): Promise<BenchEmbeddedPostgres> {
  const directory = mkdtempSync(join(tmpdir(), 'zw-bench-pg-'));
  const server = await startEmbeddedPostgres({ directory });
  return {
    url: server.url,
    async close() {
      await server.stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
