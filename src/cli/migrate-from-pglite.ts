/**
 * `npm run migrate-from-pglite [-- --from <directory>]`
 *
 * Moves a DATA_DIR written by the first embedded default (PGlite, in-process) into the PostgreSQL that
 * zapwire uses now: the embedded PostgreSQL under DATA_DIR, or DATABASE_URL when set. Run it once with
 * zapwire stopped. It copies, in one transaction:
 *
 * - the event log (streams, events with their ids, positions, payloads and times; dead letters);
 * - what cannot be rebuilt from the log: sealed instance secrets, WhatsApp session keys, the webhook
 *   delivery log, and each sink's checkpoint (so sinks neither skip nor resend what they had delivered);
 *
 * and leaves the read model to be rebuilt from the log by the projections on the next start. Then it renames
 * the PGlite directory to `pglite.migrated-<time>` (delete it once zapwire runs well). The target's event
 * log must be empty: the command refuses to merge two logs.
 *
 * Events get a new transaction id (the copy's), which is what the gap-safe reads order by; positions stay,
 * so a client resuming a WebSocket from a position it saw before resumes at the same event.
 */
import { existsSync, renameSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig } from '../config.ts';
import { MIGRATION_DIRECTORIES } from '../migrations.ts';
import { legacyPgliteDirectory, openEventStore } from '../store/index.ts';
import { decodeCheckpoint, encodeCheckpoint, justBefore } from '../store/checkpoint.ts';
import type { Checkpoint } from '../store/port.ts';
import type { SqlExecutor } from '../store/sql.ts';

/** What the copy needs from the old database: read-only queries. */
export interface LegacyReader {
  query<Row>(text: string, params?: readonly unknown[]): Promise<Row[]>;
  close(): Promise<void>;
}

export async function openLegacyPglite(directory: string): Promise<LegacyReader> {
  const { PGlite, types } = await import('@electric-sql/pglite');
  const pglite = await PGlite.create(directory, { parsers: { [types.INT8]: (value: string) => value } });
  return {
    async query<Row>(text: string, params?: readonly unknown[]) {
      return (await pglite.query<Row>(text, params ? [...params] : undefined)).rows;
    },
    close: () => pglite.close(),
  };
}

export interface MigrationSummary {
  readonly events: number;
  readonly streams: number;
  readonly secrets: number;
  readonly sessionKeys: number;
  readonly webhookDeliveries: number;
  readonly checkpoints: number;
}

interface EventRow {
  transaction_id: string;
  global_position: string;
}

const PAGE = 500;

async function tableExists(reader: LegacyReader, table: string): Promise<boolean> {
  const rows = await reader.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
  return rows[0]?.t !== null && rows[0]?.t !== undefined;
}

/** Copies a table page by page through jsonb (types survive; bytea goes as hex text and back). */
export async function copyTable(
  reader: LegacyReader,
  tx: SqlExecutor,
  table: string,
  columns: readonly string[],
  order: string,
  options: { bytea?: readonly string[]; identity?: boolean } = {},
): Promise<number> {
  if (!(await tableExists(reader, table))) return 0;
  const bytea = new Set(options.bytea ?? []);
  const select = columns.map((c) => (bytea.has(c) ? `encode(${c}, 'hex') AS ${c}` : c)).join(', ');
  const target = columns.map((c) => (bytea.has(c) ? `decode(r.${c}, 'hex')` : `r.${c}`)).join(', ');
  let copied = 0;
  for (let offset = 0; ; offset += PAGE) {
    const rows = await reader.query<Record<string, unknown>>(
      `SELECT ${select} FROM ${table} ORDER BY ${order} LIMIT ${PAGE} OFFSET ${offset}`,
    );
    if (rows.length === 0) break;
    await tx.query(
      `INSERT INTO ${table} (${columns.join(', ')}) ${options.identity ? 'OVERRIDING SYSTEM VALUE' : ''}
       SELECT ${target} FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb) AS r`,
      [JSON.stringify(rows)],
    );
    copied += rows.length;
  }
  return copied;
}

/**
 * A sink's old checkpoint (old transaction id, position) in the new log, where every copied event shares the
 * copy's transaction id: just before the first event the sink had not yet processed (it may see a few
 * events again, with their ids, but never skips one).
 */
export function translateCheckpoint(
  old: string,
  events: readonly EventRow[],
  copyTransaction: string,
  lastPosition: string,
): string {
  const decoded = decodeCheckpoint(old);
  if (!decoded) return old;
  const firstUnseen = events.find((event) => {
    const xid = BigInt(event.transaction_id);
    const position = BigInt(event.global_position);
    return xid > decoded.high || (xid === decoded.high && position > decoded.low);
  });
  const position = firstUnseen ? BigInt(firstUnseen.global_position) - 1n : BigInt(lastPosition);
  return encodeCheckpoint(copyTransaction, position);
}

/**
 * The row-based webhook outbox of older versions, in the store that replaced it: a queue with rows still
 * waiting resumes just before the first of them; dead rows become dead letters. Returns the rows read.
 */
async function convertWebhookDeliveries(
  reader: LegacyReader,
  tx: SqlExecutor,
  translate: (old: string) => string,
): Promise<number> {
  if (!(await tableExists(reader, 'zw_webhook_deliveries'))) return 0;
  const rows = await reader.query<{
    instance_id: string;
    target: string;
    url: string;
    event_id: string;
    event_name: string;
    stream: string;
    position: string;
    event_type: string;
    status: string;
    attempts: number;
    last_error: string | null;
    last_status_code: number | null;
    stored_at: string;
    redelivery_of: string | null;
  }>(
    `SELECT instance_id, target, url, event_id, event_name, stream, position, event_type, status, attempts,
            last_error, last_status_code, stored_at::text AS stored_at, redelivery_of::text AS redelivery_of
       FROM zw_webhook_deliveries WHERE status IN ('pending', 'dead') ORDER BY id`,
  );
  const firstPending = new Map<string, { instanceId: string; target: string; position: string }>();
  for (const row of rows) {
    if (row.status !== 'pending' || row.redelivery_of !== null || !row.position) continue;
    const key = `${row.target}\u0000${row.instance_id}`;
    const seen = firstPending.get(key);
    if (!seen || row.position < seen.position)
      firstPending.set(key, { instanceId: row.instance_id, target: row.target, position: row.position });
  }
  for (const { instanceId, target, position } of firstPending.values()) {
    await tx.query(
      `INSERT INTO zw_webhook_queues (instance_id, target, cursor, attached) VALUES ($1, $2, $3, false)
       ON CONFLICT (instance_id, target) DO NOTHING`,
      [instanceId, target, translate(justBefore(position as Checkpoint))],
    );
  }
  for (const row of rows) {
    if (row.status !== 'dead' || !/^[0-9a-fA-F-]{36}$/.test(row.event_id)) continue;
    await tx.query(
      `INSERT INTO es_dead_letters (subscription_id, event_id, stream_id, position, event_type, error, attempts,
                                    instance_id, detail)
       VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT (subscription_id, event_id) DO NOTHING`,
      [
        row.target === 'global' ? 'sink-webhook-global' : 'sink-webhook',
        row.event_id,
        row.stream,
        translate(row.position),
        row.event_type,
        row.last_error ?? 'dead',
        row.attempts,
        row.instance_id,
        JSON.stringify({
          target: row.target,
          url: row.url,
          eventName: row.event_name,
          statusCode: row.last_status_code,
          storedAt: row.stored_at,
          reason: 'refused',
        }),
      ],
    );
  }
  return rows.length;
}

export async function migrateFromPglite(
  reader: LegacyReader,
  target: { transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> },
): Promise<MigrationSummary> {
  const order = await reader.query<EventRow>(
    'SELECT transaction_id::text AS transaction_id, global_position::text AS global_position FROM es_events ORDER BY transaction_id, global_position',
  );
  return target.transaction(async (tx) => {
    const existing = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM es_events');
    if ((existing.rows[0]?.n ?? 0) > 0) {
      throw new Error(
        `the target already holds ${existing.rows[0]?.n} events: the migration copies into an empty store only`,
      );
    }
    const streams = await copyTable(
      reader,
      tx,
      'es_streams',
      ['stream_id', 'stream_type', 'version', 'updated_at'],
      'stream_id',
    );
    const events = await copyTable(
      reader,
      tx,
      'es_events',
      [
        'global_position',
        'stream_id',
        'stream_position',
        'event_id',
        'event_type',
        'data',
        'metadata',
        'created_at',
      ],
      'global_position',
      { identity: true },
    );
    await tx.query(
      `SELECT setval(pg_get_serial_sequence('es_events', 'global_position'), GREATEST((SELECT max(global_position) FROM es_events), 1))`,
    );
    await copyTable(
      reader,
      tx,
      'es_dead_letters',
      [
        'subscription_id',
        'event_id',
        'stream_id',
        'position',
        'event_type',
        'error',
        'attempts',
        'failed_at',
      ],
      'subscription_id, event_id',
    );
    const secrets = await copyTable(
      reader,
      tx,
      'zw_instance_secrets',
      ['instance_id', 'kind', 'sealed', 'updated_at'],
      'instance_id, kind',
    );
    const sessionKeys = await copyTable(
      reader,
      tx,
      'wa_auth_state',
      ['instance_id', 'category', 'key_ref', 'sealed', 'updated_at'],
      'instance_id, category, key_ref',
      { bytea: ['sealed'] },
    );
    const copyTransaction = (await tx.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid'))
      .rows[0]!.xid;
    const lastPosition = order.reduce(
      (max, e) => (BigInt(e.global_position) > BigInt(max) ? e.global_position : max),
      '0',
    );
    const subscriptions = (await tableExists(reader, 'es_subscriptions'))
      ? await reader.query<{
          subscription_id: string;
          checkpoint: string;
          status: string;
          last_error: string | null;
        }>(
          'SELECT subscription_id, checkpoint, status, last_error FROM es_subscriptions ORDER BY subscription_id',
        )
      : [];
    for (const subscription of subscriptions) {
      // The read model is not copied but rebuilt: a projection's checkpoint would skip the rebuild.
      if (subscription.subscription_id.startsWith('projection:')) continue;
      await tx.query(
        `INSERT INTO es_subscriptions (subscription_id, checkpoint, status, last_error) VALUES ($1, $2, $3, $4)`,
        [
          subscription.subscription_id,
          translateCheckpoint(subscription.checkpoint, order, copyTransaction, lastPosition),
          subscription.status,
          subscription.last_error,
        ],
      );
    }
    const webhookDeliveries = await convertWebhookDeliveries(reader, tx, (old) =>
      translateCheckpoint(old, order, copyTransaction, lastPosition),
    );
    const checkpoints = subscriptions.filter((s) => !s.subscription_id.startsWith('projection:')).length;
    return { events, streams, secrets, sessionKeys, webhookDeliveries, checkpoints };
  });
}

export async function runMigrateFromPglite(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: { out(text: string): void; err(text: string): void },
): Promise<number> {
  const args = parseArgs({ args: [...argv], options: { from: { type: 'string' } }, allowPositionals: false });
  let config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(error.message);
      return 78;
    }
    throw error;
  }
  if (config.eventStoreUrl) {
    io.err(
      'EVENTSTORE_URL is set: this command copies into PostgreSQL only (the embedded one or DATABASE_URL)',
    );
    return 2;
  }
  const source = resolve(args.values.from ?? legacyPgliteDirectory(config.dataDir));
  if (!existsSync(join(source, 'PG_VERSION'))) {
    io.err(`${source} holds no PGlite database (give its directory with --from)`);
    return 2;
  }
  const reader = await openLegacyPglite(source);
  const { store, db } = await openEventStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    migrations: MIGRATION_DIRECTORIES,
    allowLegacyPglite: true,
    notice: (message) => io.out(message),
  });
  let summary: MigrationSummary;
  try {
    summary = await migrateFromPglite(reader, db);
  } catch (error) {
    io.err(`nothing was copied: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await reader.close();
    await store.close();
    await db.close();
  }
  const moved = `${source}.migrated-${new Date().toISOString().replaceAll(':', '-')}`;
  renameSync(source, moved);
  io.out(
    `copied ${summary.events} events in ${summary.streams} streams, ${summary.secrets} sealed secrets, ` +
      `${summary.sessionKeys} WhatsApp session keys, ${summary.webhookDeliveries} webhook deliveries and ` +
      `${summary.checkpoints} sink checkpoints into ${config.databaseUrl ? 'DATABASE_URL' : 'the embedded PostgreSQL'}.`,
  );
  io.out(
    `The PGlite data is kept in ${moved}; delete it once zapwire runs well. Start zapwire now: the read model is rebuilt from the log.`,
  );
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runMigrateFromPglite(process.argv.slice(2), process.env, {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  }).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(
        `migrate-from-pglite failed: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      process.exit(1);
    },
  );
}
