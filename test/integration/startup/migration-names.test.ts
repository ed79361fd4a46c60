/**
 * Migration numbers are unique across directories, and a database that applied a renumbered file under
 * its former name (3001_webhook_deliveries.sql, now 4001) keeps its data and does not run it again.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { listMigrations, migrate } from '../../../src/store/migrate.ts';
import { openPostgres, type PostgresDatabase } from '../../../src/store/sql/postgres.ts';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';

let database: TestDatabase;
let db: PostgresDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
  db = await openPostgres({ url: database.url, max: 2 });
});
afterAll(async () => {
  await db?.close();
  await database?.drop();
});

it('every migration number is used once', () => {
  const numbers = listMigrations(MIGRATION_DIRECTORIES).map((file) => file.name.split('_')[0]);
  expect(new Set(numbers).size).toBe(numbers.length);
});

it('a file recorded under its former name is renamed, not applied again', async () => {
  await migrate(db, MIGRATION_DIRECTORIES);
  // What a database migrated before the renumbering holds.
  await db.query(`UPDATE schema_migrations SET name = '3001_webhook_deliveries.sql' WHERE name = $1`, [
    '4001_webhook_deliveries.sql',
  ]);
  await migrate(db, MIGRATION_DIRECTORIES);
  const { rows } = await db.query<{ name: string }>(
    `SELECT name FROM schema_migrations WHERE name LIKE '%webhook_deliveries%'`,
  );
  expect(rows.map((r) => r.name)).toEqual(['4001_webhook_deliveries.sql']);
  // Not applied again: it would have created the table that 4003 replaced.
  expect(
    (await db.query<{ t: string | null }>(`SELECT to_regclass('zw_webhook_deliveries')::text AS t`)).rows,
  ).toEqual([{ t: null }]);
  expect((await migrate(db, MIGRATION_DIRECTORIES)).applied).toEqual([]);
});
