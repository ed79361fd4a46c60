/**
 * Chooses and opens the event store (docs/event-store.md "Choosing an adapter"):
 *
 * - EVENTSTORE_URL set → KurrentDB/EventStoreDB for events; the read model (and the subscriptions'
 *   checkpoints, leases and dead letters) on DATABASE_URL when set, else on the embedded PostgreSQL.
 * - else DATABASE_URL set → that PostgreSQL for both.
 * - else → a private native PostgreSQL that zapwire starts under `<dataDir>/postgres` (the embedded
 *   default; as root its cluster may live in /var/lib/zapwire-pg, see embedded-postgres/layout.ts), for
 *   both; closing the database stops it, and it is restarted within a budget when it dies.
 *
 * Runs the migrations of the given directories (this module's own are always included) on the read-model
 * database before returning.
 */
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppendFencing, Consumers, EventLog, EventStore } from './port.ts';
import type { SqlDatabase } from './sql.ts';
import { migrate } from './migrate.ts';
import { openPostgres, type PostgresDatabase } from './sql/postgres.ts';
import { createSqlEventLog } from './sql-event-store.ts';
import { composeEventStore, createConsumers } from './event-store.ts';
import {
  startEmbeddedPostgres,
  type EmbeddedPostgres,
  type EmbeddedPostgresOutage,
} from './embedded-postgres/server.ts';
import { EmbeddedPostgresError } from './embedded-postgres/errors.ts';

/** The event store's own migrations (0001_event_store.sql, ...). */
export const STORE_MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Where the read-model database is (and the events, except with KurrentDB), and how to open it. */
export interface DatabaseConfig {
  /** Where the embedded PostgreSQL keeps its cluster when no DATABASE_URL is given. */
  readonly dataDir: string;
  readonly databaseUrl?: string | undefined;
  /** Migration directories for the read-model database, e.g. projections/migrations. */
  readonly migrations?: readonly string[];
  /** PostgreSQL pool size. */
  readonly poolMax?: number;
  /** Repeated statements run as named prepared statements (default true; see sql/postgres.ts). */
  readonly preparedStatements?: boolean;
  /** One-line notices about the embedded PostgreSQL (initialised, recovered after a crash, restarted). */
  readonly notice?: (message: string, level?: 'info' | 'warn') => void;
  /** The PGlite-to-PostgreSQL migration opens the new store while the old data is still there. */
  readonly allowLegacyPglite?: boolean;
  /** Use the embedded PostgreSQL of a zapwire running on the same DATA_DIR (tools such as replay). */
  readonly attachToRunningServer?: boolean;
  /** Embedded only: restarts of a PostgreSQL that exits on its own, in ten minutes (default 5). */
  readonly embeddedRestarts?: number;
}

/** Which log runs on an opened database, and how. */
export interface EventLogConfig {
  readonly eventStoreUrl?: string | undefined;
  /** Names this process in subscription leases. */
  readonly ownerId?: string;
  /** PostgreSQL only: NOTIFY/LISTEN wake-ups across processes (costs write throughput). */
  readonly notify?: boolean;
  /** Cluster mode: fence appends to instance streams by lease (PostgreSQL stores; see sql-event-store.ts). */
  readonly fence?: AppendFencing;
  /** KurrentDB only: streams whose delete is a tombstone (KURRENTDB_TOMBSTONE; see kurrentdb.ts). */
  readonly tombstonePrefixes?: readonly string[];
}

export type EventStoreConfig = DatabaseConfig & EventLogConfig;

/** The read-model database, open and migrated. */
export interface OpenedDatabase {
  readonly db: SqlDatabase;
  /** True when the database is the embedded PostgreSQL this process started. */
  readonly embedded: boolean;
  /** Embedded only: why the database is not answering (it exited and is being restarted, or was given up). */
  databaseOutage(): EmbeddedPostgresOutage | undefined;
  /**
   * Settles when the embedded PostgreSQL exited on its own and could not be started again within
   * `embeddedRestarts`: the process cannot go on. Never settles for a database zapwire did not start.
   */
  readonly lost: Promise<Error>;
}

export interface OpenedEventStore extends OpenedDatabase {
  /** The log only (storage): what most callers need. */
  readonly log: EventLog;
  /** Subscriptions, checkpoints and dead letters, on the read-model database. */
  readonly consumers: Consumers;
  /**
   * Both on one object, for code that needs both (the sinks). Its deleteStream also drops the stream's dead
   * letters and its close stops the subscriptions first: hand this one to whoever deletes or closes.
   */
  readonly store: EventStore;
}

/** The directory of the embedded PostgreSQL under DATA_DIR. */
export function embeddedPostgresDirectory(dataDir: string): string {
  return join(dataDir, 'postgres');
}

/** Where the first embedded default (PGlite, in-process) kept its database. */
export function legacyPgliteDirectory(dataDir: string): string {
  return join(dataDir, 'pglite');
}

async function openEmbedded(
  config: DatabaseConfig,
  onGiveUp: (reason: string) => void,
): Promise<{ db: PostgresDatabase; server: EmbeddedPostgres }> {
  const legacy = legacyPgliteDirectory(config.dataDir);
  if (!config.allowLegacyPglite && existsSync(join(legacy, 'PG_VERSION'))) {
    throw new EmbeddedPostgresError(
      `${legacy} holds data of the former embedded store (PGlite): run "npm run migrate-from-pglite" once to move it into the embedded PostgreSQL, then start again`,
    );
  }
  const server = await startEmbeddedPostgres({
    directory: embeddedPostgresDirectory(config.dataDir),
    attach: config.attachToRunningServer ?? false,
    ...(config.notice ? { notice: config.notice } : {}),
    ...(config.embeddedRestarts !== undefined ? { restarts: config.embeddedRestarts } : {}),
    onGiveUp,
  });
  try {
    // Each PostgreSQL connection is a process of ~16–20 MB RSS: on the embedded default, connections
    // opened for a burst close a second after it instead of ten. One stays, so that the heartbeat every
    // few seconds does not open (fork, authenticate) a new one each time.
    const db = await openPostgres({
      url: server.url,
      max: config.poolMax,
      idleTimeoutMs: 1_000,
      minConnections: 1,
      preparedStatements: config.preparedStatements ?? true,
    });
    return {
      server,
      db: {
        ...db,
        async close() {
          try {
            await db.close();
          } finally {
            await server.stop();
          }
        },
      },
    };
  } catch (error) {
    await server.stop();
    throw error;
  }
}

/** Opens both: the database, then the log on it (the database is closed again when the log fails to open). */
export async function openEventStore(config: EventStoreConfig): Promise<OpenedEventStore> {
  const database = await openDatabase(config);
  try {
    return await openEventLog(database, config);
  } catch (error) {
    await database.db.close().catch(() => undefined);
    throw error;
  }
}

/**
 * Opens the read-model database and runs the migrations on it. Apart from the log, so that what needs the
 * database to exist (the cluster member, which gives the log its append fence) can be made in between.
 */
export async function openDatabase(config: DatabaseConfig): Promise<OpenedDatabase> {
  const directories = [
    STORE_MIGRATIONS_DIR,
    ...(config.migrations ?? []).filter((d) => d !== STORE_MIGRATIONS_DIR),
  ];
  let giveUp: (error: Error) => void = () => undefined;
  const lost = new Promise<Error>((resolve) => (giveUp = resolve));
  const { db, server } = config.databaseUrl
    ? {
        db: await openPostgres({
          url: config.databaseUrl,
          max: config.poolMax,
          preparedStatements: config.preparedStatements ?? true,
        }),
        server: undefined,
      }
    : await openEmbedded(config, (reason) => giveUp(new Error(reason)));
  try {
    await migrate(db, directories);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return { db, embedded: !config.databaseUrl, databaseOutage: () => server?.outage(), lost };
}

/** The log on an opened database (or on KurrentDB), with the consumers on the database. */
export async function openEventLog(
  database: OpenedDatabase,
  config: EventLogConfig,
): Promise<OpenedEventStore> {
  const { db, embedded } = database;
  let log: EventLog;
  if (config.eventStoreUrl) {
    const { openKurrentEventLog } = await import('./kurrentdb.ts');
    log = openKurrentEventLog(
      config.eventStoreUrl,
      config.tombstonePrefixes ? { tombstonePrefixes: config.tombstonePrefixes } : {},
    );
  } else {
    log = createSqlEventLog(db, {
      notify: config.notify,
      kind: embedded ? 'embedded-postgres' : 'postgres',
      ...(config.fence ? { fence: config.fence } : {}),
    });
  }
  // Consumers live on the read-model database for every adapter (beside the events on PostgreSQL).
  const consumers = createConsumers(log, db, config.ownerId);
  return { ...database, log, consumers, store: composeEventStore(log, consumers) };
}

/** What /health says while the embedded PostgreSQL is not answering; undefined while it is. */
export function outageNotice(outage: EmbeddedPostgresOutage | undefined): string | undefined {
  if (!outage) return undefined;
  const since = outage.since.toISOString();
  return outage.state === 'restarting'
    ? `${outage.summary}; zapwire is restarting it (since ${since})`
    : `${outage.summary}; zapwire gave up restarting it and is exiting (since ${since})`;
}

export {
  createSqlEventLog,
  createSqlEventStore,
  type AppendFencing,
  type StreamFence,
} from './sql-event-store.ts';
export { composeEventStore, createConsumers } from './event-store.ts';
export { migrate } from './migrate.ts';
export { openPostgres } from './sql/postgres.ts';
export { EmbeddedPostgresError } from './embedded-postgres/errors.ts';
export type { EmbeddedPostgresOutage } from './embedded-postgres/server.ts';
