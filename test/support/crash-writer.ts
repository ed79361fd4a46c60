/**
 * A writer process for the crash tests (test/contract/crash.ts). Usage:
 *   node --import tsx test/support/crash-writer.ts pglite <dataDir> [<dumpDataDir tarball>] | postgres <url>
 * Opens the store (migrating it), prints "ready", then appends forever from 4 concurrent loops with exact
 * expected versions, printing "ack <stream> <nextVersion> <id,id,...>" after each append has committed.
 * The parent kills it with SIGKILL mid-stream. stdout on a pipe is synchronous on Linux, so an ack the
 * parent reads was committed before it was written.
 */
import { readFileSync } from 'node:fs';
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { openPglite } from '../../src/store/sql/pglite.ts';
import { openPostgres } from '../../src/store/sql/postgres.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { WrongExpectedVersionError } from '../../src/store/errors.ts';

const [kind, target, seed] = process.argv.slice(2);
if ((kind !== 'pglite' && kind !== 'postgres') || !target) {
  process.stderr.write('usage: crash-writer.ts pglite <dataDir> | postgres <url>\n');
  process.exit(2);
}
const db =
  kind === 'pglite'
    ? await openPglite({ dataDir: target, ...(seed ? { loadDataDir: new Blob([readFileSync(seed)]) } : {}) })
    : await openPostgres({ url: target, max: 4 });
await migrate(db, [STORE_MIGRATIONS_DIR]);
const store = createSqlEventStore(db);
process.stdout.write('ready\n');

async function writer(loop: number): Promise<never> {
  const stream = `crash-${loop}`;
  let version = await store.streamVersion(stream);
  for (let i = 0; ; i++) {
    const count = 1 + (i % 3);
    try {
      const result = await store.append(
        stream,
        Array.from({ length: count }, (_, k) => ({ type: 'Crashed', data: { loop, i, k } })),
        { expectedVersion: version },
      );
      version = result.nextVersion;
      process.stdout.write(`ack ${stream} ${version} ${result.events.map((e) => e.id).join(',')}\n`);
    } catch (error) {
      if (!(error instanceof WrongExpectedVersionError)) throw error;
      version = await store.streamVersion(stream);
    }
  }
}

await Promise.all([0, 1, 2, 3].map(writer));
