/**
 * Chooses and opens the event store (docs/event-store.md "Choosing an adapter"):
 *
 * - EVENTSTORE_URL set → KurrentDB/EventStoreDB for events; the read model (and the subscriptions'
 *   checkpoints, leases and dead letters) on DATABASE_URL when set, else on PGlite under dataDir.
 * - else DATABASE_URL set → PostgreSQL for both.
 * - else → PGlite under `<dataDir>/pglite` for both (embedded default, one process).
 *
 * Runs the migrations of the given directories (this module's own are always included) on the read-model
 * database before returning.
 */
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventStore } from './port.ts';
import type { SqlDatabase } from './sql.ts';
import { migrate } from './migrate.ts';
import { openPglite } from './sql/pglite.ts';
import { openPostgres } from './sql/postgres.ts';
import { createSqlEventStore } from './sql-event-store.ts';

/** The event store's own migrations (0001_event_store.sql, ...). */
export const STORE_MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface EventStoreConfig {
  /** Where the embedded PGlite database lives when no DATABASE_URL is given. */
  readonly dataDir: string;
  readonly databaseUrl?: string | undefined;
  readonly eventStoreUrl?: string | undefined;
  /** Migration directories for the read-model database, e.g. projections/migrations. */
  readonly migrations?: readonly string[];
  /** Names this process in subscription leases. */
  readonly ownerId?: string;
  /** PostgreSQL only: NOTIFY/LISTEN wake-ups across processes (costs write throughput). */
  readonly notify?: boolean;
  /** PostgreSQL pool size. */
  readonly poolMax?: number;
}

export interface OpenedEventStore {
  readonly store: EventStore;
  /** The read-model database (the same database as the events, except with KurrentDB). */
  readonly db: SqlDatabase;
}

async function openReadModel(config: EventStoreConfig): Promise<SqlDatabase> {
  if (config.databaseUrl) return openPostgres({ url: config.databaseUrl, max: config.poolMax });
  return openPglite({ dataDir: join(config.dataDir, 'pglite') });
}

export async function openEventStore(config: EventStoreConfig): Promise<OpenedEventStore> {
  const directories = [
    STORE_MIGRATIONS_DIR,
    ...(config.migrations ?? []).filter((d) => d !== STORE_MIGRATIONS_DIR),
  ];
  const db = await openReadModel(config);
  try {
    await migrate(db, directories);
    if (config.eventStoreUrl) {
      const { openKurrentEventStore } = await import('./kurrentdb.ts');
      const store = await openKurrentEventStore({ url: config.eventStoreUrl, db, ownerId: config.ownerId });
      return { store, db };
    }
    const store = createSqlEventStore(db, { ownerId: config.ownerId, notify: config.notify });
    return { store, db };
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
}

export { createSqlEventStore } from './sql-event-store.ts';
export { migrate } from './migrate.ts';
export { openPglite } from './sql/pglite.ts';
export { openPostgres } from './sql/postgres.ts';
