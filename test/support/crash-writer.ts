/**
 * A writer process for the crash tests (test/contract/crash.ts). Usage:
 *   node --import tsx test/support/crash-writer.ts embedded <directory> | postgres <url>
 * `embedded` starts the embedded PostgreSQL in <directory> itself, so a SIGKILL leaves it running as the
 * server of a crashed zapwire would. Opens the store (migrating it), prints "ready", then appends forever from 4 concurrent loops with exact
 * expected versions, printing "ack <stream> <nextVersion> <id,id,...>" after each append has committed.
 * The parent kills it with SIGKILL mid-stream. stdout on a pipe is synchronous on Linux, so an ack the
 * parent reads was committed before it was written.
 */
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { startEmbeddedPostgres } from '../../src/store/embedded-postgres/server.ts';
import { openPostgres } from '../../src/store/sql/postgres.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { WrongExpectedVersionError } from '../../src/store/errors.ts';

const [kind, target] = process.argv.slice(2);
if ((kind !== 'embedded' && kind !== 'postgres') || !target) {
  process.stderr.write('usage: crash-writer.ts embedded <directory> | postgres <url>\n');
  process.exit(2);
}
const url = kind === 'embedded' ? (await startEmbeddedPostgres({ directory: target })).url : target;
const db = await openPostgres({ url, max: 4 });
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
