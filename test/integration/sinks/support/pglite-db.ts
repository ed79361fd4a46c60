/**
 * A throw-away in-memory PGlite through the project's own adapter and migration runner, with the event
 * store's and the sinks' migrations applied: the embedded default, as the app runs it.
 */
import { fileURLToPath } from 'node:url';
import { SINK_MIGRATIONS_DIR } from '../../../../src/sinks/index.ts';
import { migrate } from '../../../../src/store/migrate.ts';
import { openPglite, type PgliteDatabase } from '../../../../src/store/sql/pglite.ts';

export const STORE_MIGRATIONS = fileURLToPath(new URL('../../../../src/store/migrations', import.meta.url));

export async function memoryDatabase(): Promise<PgliteDatabase> {
  const db = await openPglite({ dataDir: 'memory://' });
  await migrate(db, [STORE_MIGRATIONS, SINK_MIGRATIONS_DIR]);
  return db;
}
