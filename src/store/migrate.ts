/**
 * Numbered SQL migrations, shared by every SqlDatabase: the `*.sql` files of all given directories are
 * applied once each, in file-name order across directories (hence the numbering: 0xxx event store, 1xxx
 * read model, ...), and recorded in `schema_migrations`.
 *
 * Each file runs as one plpgsql DO block that first takes a transaction-scoped advisory lock, then checks
 * `schema_migrations`, then EXECUTEs the file and records it. So a file is applied atomically with its
 * record, and two processes starting at once against one PostgreSQL serialise on the lock: the second sees
 * the first one's record (READ COMMITTED takes a fresh snapshot after the lock) and skips the file.
 * Consequence: a migration must be able to run inside a transaction (no CREATE INDEX CONCURRENTLY).
 *
 * Numbering: 0xxx event store, 1xxx read model, 2xxx runtime, 3xxx WhatsApp adapter, 4xxx sinks, 5xxx cluster. A file
 * that was renumbered keeps its former name in FORMER_NAMES: a database that applied it under the old name
 * has that record renamed instead of running the file again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { SqlDatabase } from './sql.ts';

/** Arbitrary, fixed: the advisory-lock key every zapwire process uses for migrations. */
const MIGRATION_LOCK_KEY = 7_236_142_053_106_405_000n;

/** Current name → the name a database may have recorded it under before it was renumbered. */
const FORMER_NAMES: Readonly<Record<string, string>> = {
  '4001_webhook_deliveries.sql': '3001_webhook_deliveries.sql',
};

export interface MigrationFile {
  readonly name: string;
  readonly path: string;
}

export interface MigrationReport {
  /**
   * Names this call found missing and that are applied now (empty when everything was applied already).
   * When two processes race, both may list a file that only one of them executed.
   */
  readonly applied: readonly string[];
}

export function listMigrations(directories: readonly string[]): MigrationFile[] {
  const byName = new Map<string, MigrationFile>();
  for (const directory of directories) {
    for (const entry of readdirSync(directory)) {
      if (!entry.endsWith('.sql')) continue;
      const path = join(directory, entry);
      const existing = byName.get(entry);
      if (existing && existing.path !== path) {
        throw new Error(`two migrations are named ${entry}: ${existing.path} and ${path}`);
      }
      byName.set(entry, { name: entry, path });
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function dollarQuote(text: string): string {
  for (;;) {
    const tag = `$zw_${randomBytes(6).toString('hex')}$`;
    if (!text.includes(tag)) return `${tag}${text}${tag}`;
  }
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

export async function migrate(db: SqlDatabase, directories: readonly string[]): Promise<MigrationReport> {
  const applied: string[] = [];
  for (const file of listMigrations(directories)) {
    const script = readFileSync(file.path, 'utf8');
    const checksum = createHash('sha256').update(script).digest('hex');
    const name = basename(file.name);
    const former = FORMER_NAMES[name];
    const renameFormer = former
      ? `
  UPDATE schema_migrations SET name = ${literal(name)} WHERE name = ${literal(former)};
  IF FOUND THEN
    RETURN;
  END IF;`
      : '';
    const block = `DO ${dollarQuote(`
BEGIN
  PERFORM pg_advisory_xact_lock(${MIGRATION_LOCK_KEY});
  CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  );
  IF EXISTS (SELECT 1 FROM schema_migrations WHERE name = ${literal(name)}) THEN
    RETURN;
  END IF;${renameFormer}
  EXECUTE ${dollarQuote(script)};
  INSERT INTO schema_migrations (name, checksum) VALUES (${literal(name)}, ${literal(checksum)});
END`)};`;
    if (await isApplied(db, name)) continue;
    try {
      await db.exec(block);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`migration ${file.path} failed: ${message}`, { cause: error });
    }
    if (await isApplied(db, name)) applied.push(name);
  }
  return { applied };
}

async function isApplied(db: SqlDatabase, name: string): Promise<boolean> {
  const { rows } = await db.query<{ applied: boolean }>(
    `SELECT to_regclass('schema_migrations') IS NOT NULL AS applied`,
  );
  if (!rows[0]?.applied) return false;
  const found = await db.query('SELECT 1 FROM schema_migrations WHERE name = $1', [name]);
  return found.rows.length > 0;
}
