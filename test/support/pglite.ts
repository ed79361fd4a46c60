/**
 * PGlite for tests. A cold create costs ~4 s, so open one per test file (beforeAll) and empty the tables
 * between tests with `truncate`, which takes milliseconds.
 */
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { openPglite, type PgliteDatabase } from '../../src/store/sql/pglite.ts';

/** The event store's tables, emptied by `truncate` (read-model tables are the caller's to list). */
export const EVENT_STORE_TABLES = ['es_events', 'es_streams', 'es_subscriptions', 'es_dead_letters'] as const;

export interface TestPglite {
  readonly db: PgliteDatabase;
  /** Empties the event-store tables plus `extraTables`, and restarts their identities. */
  truncate(extraTables?: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export async function openTestPglite(
  options: { dataDir?: string; migrations?: readonly string[] } = {},
): Promise<TestPglite> {
  const db = await openPglite({ dataDir: options.dataDir ?? 'memory://' });
  await migrate(db, [STORE_MIGRATIONS_DIR, ...(options.migrations ?? [])]);
  return {
    db,
    async truncate(extraTables = []) {
      await db.exec(`TRUNCATE ${[...EVENT_STORE_TABLES, ...extraTables].join(', ')} RESTART IDENTITY`);
    },
    close: () => db.close(),
  };
}
