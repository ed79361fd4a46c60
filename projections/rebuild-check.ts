/**
 * Rebuild equality: copies a projection's live tables aside (in the database, so a big table costs no
 * memory), lets the runner rebuild them from the log up to the same checkpoint, and compares row by row
 * on each table's primary key. Plugs into ProjectionRunner.rebuild as its RebuildCheck.
 */
import type { SqlDatabase, SqlExecutor } from '../src/store/sql.ts';
import type { Projection } from './projection.ts';
import type { RebuildCheck } from './runner.ts';

/** Rows listed per kind of difference and table; the counts are always complete. */
export const DIFFERENCE_SAMPLE = 20;

export interface ChangedRow {
  readonly key: Record<string, unknown>;
  /** Only the columns that differ. */
  readonly columns: Record<string, { readonly live: unknown; readonly rebuilt: unknown }>;
}

export interface TableComparison {
  readonly table: string;
  readonly liveRows: number;
  readonly rebuiltRows: number;
  /** The primary key the rows were matched on (empty: the table has none; compared as multisets). */
  readonly key: readonly string[];
  /** Rows the live model had and the rebuild did not produce. */
  readonly missing: number;
  /** Rows the rebuild produced that the live model did not have. */
  readonly extra: number;
  /** Rows with the same key and different values. */
  readonly changed: number;
  readonly samples: {
    readonly missing: readonly Record<string, unknown>[];
    readonly extra: readonly Record<string, unknown>[];
    readonly changed: readonly ChangedRow[];
  };
}

export interface RebuildComparison {
  readonly equal: boolean;
  readonly checkpoint: string;
  readonly tables: readonly TableComparison[];
}

function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/i.test(name)) throw new Error(`not a plain SQL identifier: ${name}`);
  return `"${name}"`;
}

function snapshotTable(table: string): string {
  return `zw_rebuild_check_${table}`.slice(0, 63);
}

async function primaryKey(db: SqlExecutor, table: string): Promise<string[]> {
  const { rows } = await db.query<{ column: string }>(
    `SELECT a.attname AS column
       FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [table],
  );
  return rows.map((r) => r.column);
}

function json(value: unknown): Record<string, unknown> {
  return (typeof value === 'string' ? JSON.parse(value) : value) as Record<string, unknown>;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function count(db: SqlExecutor, sql: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) AS q`);
  return rows[0]?.n ?? 0;
}

async function compareTable(db: SqlExecutor, table: string): Promise<TableComparison> {
  const live = ident(snapshotTable(table));
  const rebuilt = ident(table);
  const key = await primaryKey(db, table);
  const liveRows = await count(db, `SELECT 1 FROM ${live}`);
  const rebuiltRows = await count(db, `SELECT 1 FROM ${rebuilt}`);

  if (key.length === 0) {
    const missingSql = `SELECT to_jsonb(l) AS row FROM ${live} l EXCEPT ALL SELECT to_jsonb(r) FROM ${rebuilt} r`;
    const extraSql = `SELECT to_jsonb(r) AS row FROM ${rebuilt} r EXCEPT ALL SELECT to_jsonb(l) FROM ${live} l`;
    const [missing, extra] = [await count(db, missingSql), await count(db, extraSql)];
    const sample = async (sql: string) =>
      (await db.query<{ row: unknown }>(`${sql} LIMIT ${DIFFERENCE_SAMPLE}`)).rows.map((r) => json(r.row));
    return {
      table,
      liveRows,
      rebuiltRows,
      key,
      missing,
      extra,
      changed: 0,
      samples: { missing: await sample(missingSql), extra: await sample(extraSql), changed: [] },
    };
  }

  const on = key.map((c) => `l.${ident(c)} = r.${ident(c)}`).join(' AND ');
  const keyOf = (alias: string) =>
    `jsonb_build_object(${key.map((c) => `'${c}', ${alias}.${ident(c)}`).join(', ')})`;
  const missingSql = `SELECT ${keyOf('l')} AS key FROM ${live} l WHERE NOT EXISTS (SELECT 1 FROM ${rebuilt} r WHERE ${on})`;
  const extraSql = `SELECT ${keyOf('r')} AS key FROM ${rebuilt} r WHERE NOT EXISTS (SELECT 1 FROM ${live} l WHERE ${on})`;
  const changedSql = `SELECT ${keyOf('l')} AS key, to_jsonb(l) AS live, to_jsonb(r) AS rebuilt
    FROM ${live} l JOIN ${rebuilt} r ON ${on} WHERE to_jsonb(l) IS DISTINCT FROM to_jsonb(r)`;
  const keys = async (sql: string) =>
    (await db.query<{ key: unknown }>(`${sql} LIMIT ${DIFFERENCE_SAMPLE}`)).rows.map((r) => json(r.key));
  const changedRows = (
    await db.query<{ key: unknown; live: unknown; rebuilt: unknown }>(
      `${changedSql} LIMIT ${DIFFERENCE_SAMPLE}`,
    )
  ).rows.map((row): ChangedRow => {
    const before = json(row.live);
    const after = json(row.rebuilt);
    const columns: Record<string, { live: unknown; rebuilt: unknown }> = {};
    for (const column of new Set([...Object.keys(before), ...Object.keys(after)])) {
      if (!sameValue(before[column], after[column]))
        columns[column] = { live: before[column] ?? null, rebuilt: after[column] ?? null };
    }
    return { key: json(row.key), columns };
  });
  return {
    table,
    liveRows,
    rebuiltRows,
    key,
    missing: await count(db, missingSql),
    extra: await count(db, extraSql),
    changed: await count(db, changedSql),
    samples: { missing: await keys(missingSql), extra: await keys(extraSql), changed: changedRows },
  };
}

/**
 * A RebuildCheck for ProjectionRunner.rebuild; `result()` holds the comparison once the rebuild is done.
 * The copies are dropped afterwards, also when the rebuild fails.
 */
export function rebuildEqualityCheck(db: SqlDatabase): RebuildCheck & {
  result(): RebuildComparison | undefined;
  cleanUp(): Promise<void>;
} {
  let comparison: RebuildComparison | undefined;
  let copied: string[] = [];
  const cleanUp = async (): Promise<void> => {
    for (const table of copied) await db.query(`DROP TABLE IF EXISTS ${ident(snapshotTable(table))}`);
    copied = [];
  };
  return {
    async live(projection: Projection) {
      for (const table of projection.tables) {
        const copy = ident(snapshotTable(table));
        await db.query(`DROP TABLE IF EXISTS ${copy}`);
        copied.push(table);
        await db.query(`CREATE TABLE ${copy} AS SELECT * FROM ${ident(table)}`);
      }
    },
    async rebuilt(projection: Projection, checkpoint) {
      const tables: TableComparison[] = [];
      for (const table of projection.tables) tables.push(await compareTable(db, table));
      comparison = {
        equal: tables.every((t) => t.missing === 0 && t.extra === 0 && t.changed === 0),
        checkpoint,
        tables,
      };
      await cleanUp();
    },
    result: () => comparison,
    cleanUp,
  };
}
