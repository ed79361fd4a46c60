/**
 * `npm run migrate-from-pglite`: a DATA_DIR written by the PGlite default is moved into PostgreSQL. The
 * legacy database is made from a real app's data (an instance created, paired, given a webhook secret and a
 * sink checkpoint), copied into PGlite as the old default kept it; after the migration the app starts on
 * the new store with the instance, its token and its session, and the PGlite directory is set aside.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, types } from '@electric-sql/pglite';
import { afterAll, describe, expect, it } from 'vitest';
import {
  copyTable,
  openLegacyPglite,
  runMigrateFromPglite,
  translateCheckpoint,
  type LegacyReader,
} from '../../../src/cli/migrate-from-pglite.ts';
import { encodeCheckpoint } from '../../../src/store/checkpoint.ts';
import { migrate } from '../../../src/store/migrate.ts';
import type { SqlDatabase, SqlExecutor } from '../../../src/store/sql.ts';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { openPostgres } from '../../../src/store/sql/postgres.ts';
import { createTestDatabase, databaseUrlForDataDir, type TestDatabase } from '../../support/postgres.ts';
import { eventually, startTestApp } from '../../support/zapwire.ts';

const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

/** PGlite with the migrations applied, as the former default adapter opened it. */
async function legacyDatabase(directory: string): Promise<{ pglite: PGlite; db: SqlDatabase }> {
  const pglite = await PGlite.create(directory, { parsers: { [types.INT8]: (value: string) => value } });
  const executor = (target: Pick<PGlite, 'query'>): SqlExecutor => ({
    async query<Row>(text: string, params?: readonly unknown[]) {
      const result = await target.query<Row>(text, params ? [...params] : undefined);
      return { rows: result.rows, rowCount: Math.max(result.affectedRows ?? 0, result.rows.length) };
    },
  });
  const db: SqlDatabase = {
    dialect: 'postgres',
    ...executor(pglite),
    transaction: (fn) => pglite.transaction((tx) => fn(executor(tx))),
    exec: async (script) => void (await pglite.exec(script)),
    close: () => pglite.close(),
  };
  await migrate(db, MIGRATION_DIRECTORIES);
  return { pglite, db };
}

function postgresReader(url: string): LegacyReader & { ready: Promise<void> } {
  const opened = openPostgres({ url, max: 2 });
  return {
    ready: opened.then(() => undefined),
    async query<Row>(text: string, params?: readonly unknown[]) {
      return (await (await opened).query<Row>(text, params)).rows;
    },
    close: async () => (await opened).close(),
  };
}

describe('migrate-from-pglite', () => {
  it('moves the log, secrets, sessions and sink checkpoints; the app starts on the new store with them', async () => {
    // A real app's data, on PostgreSQL first.
    const source = await startTestApp();
    const dataDir = source.dataDir;
    const created = await source.request('POST', '/instance/create', {
      body: { name: 'legacy', token: 'legacy-token-123456' },
    });
    const id = created.body['id'] as string;
    await source.request('POST', '/instance/connect', {
      apikey: 'legacy-token-123456',
      body: { webhookUrl: 'https://hooks.example.com/zapwire' },
    });
    const connection = await eventually(() => source.fake.connection(id));
    connection.issueQr();
    connection.scan();
    await eventually(
      async () =>
        (await source.request('GET', '/instance/status', { apikey: 'legacy-token-123456' })).body['state'] ===
        'open',
    );
    await source.zapwire.stop();
    const sourceUrl = await databaseUrlForDataDir(dataDir);

    // The same rows in PGlite under DATA_DIR/pglite, as the former default kept them.
    const legacyDir = join(dataDir, 'pglite');
    const legacy = await legacyDatabase(legacyDir);
    const reader = postgresReader(sourceUrl);
    await reader.ready;
    await legacy.db.transaction(async (tx) => {
      for (const [table, columns, order] of [
        ['es_streams', ['stream_id', 'stream_type', 'version', 'updated_at'], 'stream_id'],
        [
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
        ],
        ['es_subscriptions', ['subscription_id', 'checkpoint', 'status'], 'subscription_id'],
        ['zw_instance_secrets', ['instance_id', 'kind', 'sealed', 'updated_at'], 'instance_id, kind'],
      ] as const) {
        await copyTable(reader, tx, table, columns, order, { identity: table === 'es_events' });
      }
    });
    const sourceEvents = await reader.query<{ n: number }>('SELECT count(*)::int AS n FROM es_events');
    const sinkCheckpoints = await reader.query<{ subscription_id: string }>(
      `SELECT subscription_id FROM es_subscriptions WHERE subscription_id NOT LIKE 'projection:%'`,
    );
    await reader.close();
    await legacy.db.close();

    // The migration, into a fresh database (DATABASE_URL), as a user would run it.
    const target: TestDatabase = await createTestDatabase();
    cleanup.push(() => target.drop());
    const out: string[] = [];
    const err: string[] = [];
    const code = await runMigrateFromPglite(
      [],
      { DATA_DIR: dataDir, DATABASE_URL: target.url },
      {
        out: (t) => out.push(t),
        err: (t) => err.push(t),
      },
    );
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect(out.join('\n')).toMatch(new RegExp(`copied ${sourceEvents[0]!.n} events`));
    expect(existsSync(legacyDir)).toBe(false);
    expect(readdirSync(dataDir).some((name) => name.startsWith('pglite.migrated-'))).toBe(true);

    // A second run finds nothing to migrate and says so.
    const again = await runMigrateFromPglite(
      [],
      { DATA_DIR: dataDir, DATABASE_URL: target.url },
      {
        out: () => undefined,
        err: (t) => err.push(t),
      },
    );
    expect(again).toBe(2);
    expect(err.join('\n')).toMatch(/holds no PGlite database/);

    const migrated = await startTestApp({ dataDir, env: { DATABASE_URL: target.url } });
    cleanup.push(() => migrated.stop());
    // The read model follows the log: the restore's ConnectionStarting shows a moment after the start.
    const status = await eventually(async () => {
      const reply = await migrated.request('GET', '/instance/status', { apikey: 'legacy-token-123456' });
      return reply.status === 200 && reply.body['state'] !== 'disconnected' ? reply.body : undefined;
    });
    // Known by its token, and still paired: the migrated session is restored (no QR needed).
    expect(['open', 'connecting']).toContain(status['state']);
    const copiedCheckpoints = await migrated.zapwire.db.query<{ subscription_id: string }>(
      'SELECT subscription_id FROM es_subscriptions',
    );
    expect(copiedCheckpoints.rows.map((r) => r.subscription_id).sort()).toEqual(
      expect.arrayContaining(sinkCheckpoints.map((r) => r.subscription_id).sort()),
    );
    expect(sinkCheckpoints.length).toBeGreaterThan(0);
    const secrets = await migrated.zapwire.db.query(
      'SELECT 1 FROM zw_instance_secrets WHERE instance_id = $1',
      [id],
    );
    expect(secrets.rowCount).toBeGreaterThan(0);
  }, 240_000);

  it('refuses a target that already holds events, copying nothing', async () => {
    const directory = join((await startTestApp()).dataDir, 'pglite-refused');
    const legacy = await legacyDatabase(directory);
    await legacy.db.close();
    const target = await createTestDatabase();
    cleanup.push(() => target.drop());
    const db = await openPostgres({ url: target.url, max: 1 });
    await migrate(db, MIGRATION_DIRECTORIES);
    await db.query(
      `SELECT * FROM es_append('s-1', 's', NULL, '[{"id":"00000000-0000-4000-8000-000000000001","type":"T","data":{},"metadata":{}}]'::jsonb)`,
    );
    await db.close();
    const err: string[] = [];
    const code = await runMigrateFromPglite(
      ['--from', directory],
      { DATABASE_URL: target.url, DATA_DIR: directory },
      {
        out: () => undefined,
        err: (t) => err.push(t),
      },
    );
    expect(code).toBe(1);
    expect(err.join('\n')).toMatch(/nothing was copied: the target already holds 1 events/);
    expect(existsSync(join(directory, 'PG_VERSION'))).toBe(true);
    const reader = await openLegacyPglite(directory);
    await reader.close();
  }, 60_000);

  it('translates a sink checkpoint to just before the first event it had not processed', () => {
    const events = [
      { transaction_id: '700', global_position: '1' },
      { transaction_id: '701', global_position: '3' },
      { transaction_id: '702', global_position: '2' },
      { transaction_id: '703', global_position: '4' },
    ];
    // Processed up to (701, 3): position 2 (xid 702) is not processed yet, though its position is lower.
    expect(translateCheckpoint(encodeCheckpoint(701, 3), events, '900', '4')).toBe(encodeCheckpoint(900, 1));
    expect(translateCheckpoint(encodeCheckpoint(703, 4), events, '900', '4')).toBe(encodeCheckpoint(900, 4));
    expect(translateCheckpoint('', events, '900', '4')).toBe('');
  });
});
