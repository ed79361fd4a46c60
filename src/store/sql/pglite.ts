/**
 * SqlDatabase on PGlite (embedded PostgreSQL in WASM), used directly: no pglite-socket, no pg.Pool on top
 * (eventstore-notes §4 explains why those break advisory locks, LISTEN and error recovery).
 *
 * PGlite is ONE backend session. Its own `transaction()` holds PGlite's transaction mutex from BEGIN to
 * COMMIT, and every `query()`/`exec()` takes the same mutex, so a query issued from outside an open
 * transaction waits until it commits or rolls back: it can neither see uncommitted rows nor be executed
 * inside someone else's transaction. We rely on that (test/contract/pglite.test.ts checks it) and add one
 * guard: calling the database (not the tx executor) from inside a transaction callback would wait for
 * itself forever, so it throws instead.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { SqlDatabase, SqlExecutor, SqlResult } from '../sql.ts';
import { PGLITE_INT8_AS_TEXT } from './int8.ts';

export interface PgliteOptions {
  /** A directory (created when missing) for a durable database, or `memory://` for a throw-away one. */
  readonly dataDir: string;
  /**
   * Seeds a NEW data directory from a `pglite.dumpDataDir()` tarball instead of running initdb (about 2 s
   * instead of 4–5 s; tests use it). Ignored by PGlite when the directory already holds a database.
   */
  readonly loadDataDir?: Blob;
}

export interface PgliteDatabase extends SqlDatabase {
  readonly dialect: 'pglite';
  /** The underlying PGlite, for tests and tools that need its own API. */
  readonly pglite: PGlite;
}

interface OpenTransaction {
  open: boolean;
}

type Queryable = Pick<PGlite, 'query'> | Pick<Transaction, 'query'>;

async function run<Row>(
  target: Queryable,
  text: string,
  params?: readonly unknown[],
): Promise<SqlResult<Row>> {
  const result = await target.query<Row>(text, params ? [...params] : undefined);
  // PGlite reports affectedRows for INSERT/UPDATE/DELETE and 0 for SELECT; pg's rowCount covers both.
  return { rows: result.rows, rowCount: Math.max(result.affectedRows ?? 0, result.rows.length) };
}

export async function openPglite(options: PgliteOptions): Promise<PgliteDatabase> {
  const memory = options.dataDir.startsWith('memory://');
  if (!memory) mkdirSync(options.dataDir, { recursive: true });
  const pglite = await PGlite.create(options.dataDir, {
    parsers: PGLITE_INT8_AS_TEXT,
    ...(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {}),
  });
  const insideTransaction = new AsyncLocalStorage<OpenTransaction>();

  const guard = (): void => {
    if (insideTransaction.getStore()?.open) {
      throw new Error(
        'PGlite is one session: this query was issued on the database from inside its own transaction and ' +
          'would wait for that transaction forever. Use the executor passed to the transaction callback.',
      );
    }
  };

  return {
    dialect: 'pglite',
    pglite,
    async query<Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      guard();
      return run<Row>(pglite, text, params);
    },
    async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
      guard();
      const marker: OpenTransaction = { open: true };
      try {
        return await insideTransaction.run(marker, () =>
          pglite.transaction((tx) =>
            fn({
              query: <Row = Record<string, unknown>>(text: string, params?: readonly unknown[]) =>
                run<Row>(tx, text, params),
            }),
          ),
        );
      } finally {
        marker.open = false;
      }
    },
    async exec(script: string): Promise<void> {
      guard();
      await pglite.exec(script);
    },
    async listen(channel: string, onNotification: (payload: string) => void): Promise<() => Promise<void>> {
      guard();
      const unlisten = await pglite.listen(channel, onNotification);
      return async () => {
        if (!pglite.closed) await unlisten();
      };
    },
    async close(): Promise<void> {
      if (!pglite.closed) await pglite.close();
    },
  };
}
