/**
 * An in-memory PGlite behind the SqlDatabase port, with the sinks' migrations applied: the delivery log's
 * database for tests that do not need durability.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { SqlDatabase, SqlExecutor, SqlResult } from '../../../../src/store/sql.ts';
import { SINK_MIGRATIONS_DIR } from '../../../../src/sinks/index.ts';

function wrap(q: Pick<PGlite, 'query'>): SqlExecutor {
  return {
    async query<Row>(text: string, params?: readonly unknown[]): Promise<SqlResult<Row>> {
      const result = await q.query<Row>(text, params ? [...params] : undefined);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
  };
}

export async function applySinkMigrations(db: SqlDatabase): Promise<void> {
  for (const file of readdirSync(SINK_MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort()) {
    await db.exec(readFileSync(join(SINK_MIGRATIONS_DIR, file), 'utf8'));
  }
}

export async function memoryDatabase(): Promise<SqlDatabase & { pglite: PGlite }> {
  const pglite = await PGlite.create();
  const base = wrap(pglite);
  const db: SqlDatabase & { pglite: PGlite } = {
    dialect: 'pglite',
    pglite,
    query: base.query,
    transaction: (fn) => pglite.transaction((tx) => fn(wrap(tx))),
    exec: async (script) => {
      await pglite.exec(script);
    },
    close: () => pglite.close(),
  };
  await applySinkMigrations(db);
  return db;
}
