/**
 * Event-store benchmark (`npm run bench -- eventstore`): for the embedded PostgreSQL (the default, as
 * zapwire starts it) and an external PostgreSQL (a fresh database on BENCH_PG_URL, default the local
 * server), each measure beside raw SQL on the same database in
 * the same run:
 *
 *   single-event appends/s   store.append(1 event), one at a time   vs  INSERT of one row
 *   batch-of-10 events/s     store.append(10 events), one at a time vs  INSERT of 10 rows in one statement
 *   catch-up read events/s   readAll pages of 500 (gap-safe query)   vs  SELECT … WHERE id > $1 ORDER BY id LIMIT 500
 *   append→subscriber p50/p99 ms: a live subscription woken by the append signal
 *                                 vs  INSERT + in-process signal + SELECT id > last
 *
 * The raw table has the event columns (no stream row, no version check, no xid8 ordering), so the ratio is
 * the price of optimistic concurrency, idempotency keys and the gap-safe read. Env: BENCH_SCALE (default 1)
 * multiplies the counts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { migrate } from '../../src/store/migrate.ts';
import { STORE_MIGRATIONS_DIR } from '../../src/store/index.ts';
import { startBenchEmbeddedPostgres } from '../support/embedded-postgres.ts';
import { openPostgres } from '../../src/store/sql/postgres.ts';
import { createSqlEventStore } from '../../src/store/sql-event-store.ts';
import { START, type Checkpoint, type EventStore } from '../../src/store/port.ts';
import type { SqlDatabase } from '../../src/store/sql.ts';

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const COUNTS = {
  singles: Math.round(2_000 * SCALE),
  batches: Math.round(300 * SCALE),
  reads: Math.round(10_000 * SCALE),
  latency: Math.round(300 * SCALE),
};
const STREAMS = 100;

interface Row {
  readonly database: string;
  readonly measure: string;
  readonly store: number;
  readonly raw: number;
  /** Higher is better for rates, lower for latencies: the ratio is always store/raw. */
  readonly unit: string;
}

const payload = (i: number): Record<string, unknown> => ({
  i,
  text: 'hello from the benchmark',
  at: Date.now(),
});

async function timed(fn: () => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function createRawTable(db: SqlDatabase): Promise<void> {
  await db.exec(`
    DROP TABLE IF EXISTS bench_raw;
    CREATE TABLE bench_raw (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      stream_id   text        NOT NULL,
      event_id    uuid        NOT NULL,
      event_type  text        NOT NULL,
      data        jsonb       NOT NULL,
      created_at  timestamptz NOT NULL DEFAULT now()
    );`);
}

async function reset(db: SqlDatabase): Promise<void> {
  await db.exec(
    'TRUNCATE es_events, es_streams, es_subscriptions, es_dead_letters, bench_raw RESTART IDENTITY',
  );
}

async function appendRates(name: string, db: SqlDatabase, store: EventStore): Promise<Row[]> {
  const versions = new Map<string, number>();
  const storeSingle = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const stream = `bench-${i % STREAMS}`;
      const result = await store.append(stream, [{ type: 'Benchmarked', data: payload(i) }], {
        expectedVersion: versions.get(stream) ?? 0,
      });
      versions.set(stream, result.nextVersion);
    }
  };
  const rawSingle = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      await db.query(
        'INSERT INTO bench_raw (stream_id, event_id, event_type, data) VALUES ($1, $2, $3, $4::jsonb)',
        [`bench-${i % STREAMS}`, randomUUID(), 'Benchmarked', JSON.stringify(payload(i))],
      );
    }
  };
  const storeBatch = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const stream = `batch-${i % STREAMS}`;
      const events = Array.from({ length: 10 }, (_, k) => ({
        type: 'Benchmarked',
        data: payload(i * 10 + k),
      }));
      const result = await store.append(stream, events, { expectedVersion: versions.get(stream) ?? 0 });
      versions.set(stream, result.nextVersion);
    }
  };
  const rawValues = Array.from(
    { length: 10 },
    (_, k) => `($1, $${k * 2 + 2}::uuid, 'Benchmarked', $${k * 2 + 3}::jsonb)`,
  ).join(', ');
  const rawBatch = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const params: unknown[] = [`batch-${i % STREAMS}`];
      for (let k = 0; k < 10; k++) params.push(randomUUID(), JSON.stringify(payload(i * 10 + k)));
      await db.query(
        `INSERT INTO bench_raw (stream_id, event_id, event_type, data) VALUES ${rawValues}`,
        params,
      );
    }
  };

  // Warm up both paths (query plans, and PGlite's WASM tiers up after a few hundred calls), then start
  // from empty tables.
  await storeSingle(300);
  await rawSingle(300);
  await storeBatch(30);
  await rawBatch(30);
  versions.clear();
  await reset(db);

  const storeSingleMs = await timed(() => storeSingle(COUNTS.singles));
  const rawSingleMs = await timed(() => rawSingle(COUNTS.singles));
  const storeBatchMs = await timed(() => storeBatch(COUNTS.batches));
  const rawBatchMs = await timed(() => rawBatch(COUNTS.batches));
  return [
    {
      database: name,
      measure: 'single-event appends/s',
      store: (COUNTS.singles / storeSingleMs) * 1000,
      raw: (COUNTS.singles / rawSingleMs) * 1000,
      unit: '/s',
    },
    {
      database: name,
      measure: 'batch-of-10 appends: events/s',
      store: ((COUNTS.batches * 10) / storeBatchMs) * 1000,
      raw: ((COUNTS.batches * 10) / rawBatchMs) * 1000,
      unit: '/s',
    },
  ];
}

async function readRate(name: string, db: SqlDatabase, store: EventStore): Promise<Row> {
  await reset(db);
  // Fill both tables with the same number of events, in batches of 100 (fast to load).
  for (let i = 0; i < COUNTS.reads / 100; i++) {
    const events = Array.from({ length: 100 }, (_, k) => ({
      type: 'Benchmarked',
      data: payload(i * 100 + k),
    }));
    await store.append(`read-${i % STREAMS}`, events);
    const params: unknown[] = [`read-${i % STREAMS}`];
    const values: string[] = [];
    for (let k = 0; k < 100; k++) {
      params.push(randomUUID(), JSON.stringify(payload(i * 100 + k)));
      values.push(`($1, $${k * 2 + 2}::uuid, 'Benchmarked', $${k * 2 + 3}::jsonb)`);
    }
    await db.query(
      `INSERT INTO bench_raw (stream_id, event_id, event_type, data) VALUES ${values.join(', ')}`,
      params,
    );
  }
  let storeCount = 0;
  const storeMs = await timed(async () => {
    let after: Checkpoint = START;
    for (;;) {
      const page = await store.readAll({ after, limit: 500 });
      storeCount += page.events.length;
      after = page.next;
      if (page.caughtUp) break;
    }
  });
  let rawCount = 0;
  const rawMs = await timed(async () => {
    let after = '0';
    for (;;) {
      const { rows } = await db.query<{ id: string }>(
        `SELECT id::text AS id, stream_id, event_id::text AS event_id, event_type, data, created_at
           FROM bench_raw WHERE id > $1::bigint ORDER BY bench_raw.id LIMIT 500`,
        [after],
      );
      rawCount += rows.length;
      if (rows.length < 500) break;
      after = rows.at(-1)!.id;
    }
  });
  if (storeCount !== COUNTS.reads || rawCount !== COUNTS.reads) {
    throw new Error(`read ${storeCount} (store) and ${rawCount} (raw) of ${COUNTS.reads} events`);
  }
  return {
    database: name,
    measure: 'catch-up read events/s (pages of 500)',
    store: (storeCount / storeMs) * 1000,
    raw: (rawCount / rawMs) * 1000,
    unit: '/s',
  };
}

/** Appends one event every `gapMs` and measures how long until a live subscriber has it. */
async function latency(name: string, db: SqlDatabase, store: EventStore): Promise<Row[]> {
  await reset(db);
  const gapMs = 5;
  const storeLatencies: number[] = [];
  {
    const sent = new Map<string, bigint>();
    const sub = store.subscribe(
      'bench-latency',
      { pollIntervalMs: 1_000, batchSize: 100 },
      async (events) => {
        const now = process.hrtime.bigint();
        for (const event of events) {
          const at = sent.get(event.id);
          if (at !== undefined) storeLatencies.push(Number(now - at) / 1e6);
        }
      },
    );
    await sub.caughtUp;
    let last: Checkpoint = START;
    for (let i = 0; i < COUNTS.latency; i++) {
      const id = randomUUID();
      sent.set(id, process.hrtime.bigint());
      last = (await store.append(`lat-${i % STREAMS}`, [{ id, type: 'Benchmarked', data: payload(i) }]))
        .position;
      await sleep(gapMs);
    }
    await sub.waitFor(last, 10_000);
    await sub.stop();
  }

  // The raw baseline: INSERT, an in-process signal, a poller that SELECTs id > last.
  const rawLatencies: number[] = [];
  {
    const sent = new Map<string, bigint>();
    let wake: (() => void) | undefined;
    let dirty = false;
    let stopped = false;
    let lastId = '0';
    const poller = (async () => {
      while (!stopped) {
        dirty = false;
        const { rows } = await db.query<{ id: string; event_id: string }>(
          'SELECT id::text AS id, event_id::text AS event_id, data FROM bench_raw WHERE id > $1::bigint ORDER BY bench_raw.id LIMIT 100',
          [lastId],
        );
        const now = process.hrtime.bigint();
        for (const row of rows) {
          const at = sent.get(row.event_id);
          if (at !== undefined) rawLatencies.push(Number(now - at) / 1e6);
          lastId = row.id;
        }
        if (rows.length < 100 && !dirty) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 1_000);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      }
    })();
    for (let i = 0; i < COUNTS.latency; i++) {
      const id = randomUUID();
      sent.set(id, process.hrtime.bigint());
      await db.query(
        'INSERT INTO bench_raw (stream_id, event_id, event_type, data) VALUES ($1, $2, $3, $4::jsonb)',
        [`lat-${i % STREAMS}`, id, 'Benchmarked', JSON.stringify(payload(i))],
      );
      dirty = true;
      wake?.();
      await sleep(gapMs);
    }
    const deadline = Date.now() + 10_000;
    while (rawLatencies.length < COUNTS.latency && Date.now() < deadline) await sleep(10);
    stopped = true;
    wake?.();
    await poller;
  }
  if (storeLatencies.length !== COUNTS.latency || rawLatencies.length !== COUNTS.latency) {
    throw new Error(`latency samples: ${storeLatencies.length} (store), ${rawLatencies.length} (raw)`);
  }
  storeLatencies.sort((a, b) => a - b);
  rawLatencies.sort((a, b) => a - b);
  return [
    {
      database: name,
      measure: 'append→subscriber latency p50 (ms)',
      store: percentile(storeLatencies, 50),
      raw: percentile(rawLatencies, 50),
      unit: 'ms',
    },
    {
      database: name,
      measure: 'append→subscriber latency p99 (ms)',
      store: percentile(storeLatencies, 99),
      raw: percentile(rawLatencies, 99),
      unit: 'ms',
    },
  ];
}

async function benchDatabase(name: string, db: SqlDatabase): Promise<Row[]> {
  await migrate(db, [STORE_MIGRATIONS_DIR]);
  await createRawTable(db);
  const store = createSqlEventStore(db);
  try {
    return [
      ...(await appendRates(name, db, store)),
      await readRate(name, db, store),
      ...(await latency(name, db, store)),
    ];
  } finally {
    await store.close();
  }
}

function format(value: number, unit: string): string {
  if (unit === 'ms') return value.toFixed(2);
  return Math.round(value).toLocaleString('en-US');
}

function printTable(rows: readonly Row[]): void {
  const header = ['database', 'measure', 'event store', 'raw SQL', 'store / raw'];
  const body = rows.map((row) => [
    row.database,
    row.measure,
    format(row.store, row.unit),
    format(row.raw, row.unit),
    `${(row.store / row.raw).toFixed(2)}×`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w, i) => (i >= 2 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`);
  for (const row of body) console.log(line(row));
}

export default async function benchEventStore(): Promise<void> {
  const started = Date.now();
  const rows: Row[] = [];

  console.log('eventstore bench: embedded PostgreSQL …');
  const embedded = await startBenchEmbeddedPostgres();
  try {
    const db = await openPostgres({ url: embedded.url, max: 4 });
    try {
      rows.push(...(await benchDatabase('embedded', db)));
    } finally {
      await db.close();
    }
  } finally {
    await embedded.close();
  }

  const serverUrl =
    process.env.BENCH_PG_URL ??
    process.env.TEST_DATABASE_URL ??
    'postgres://postgres@127.0.0.1:5432/postgres';
  const dbName = `zw_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(serverUrl);
  url.pathname = `/${dbName}`;
  console.log(`eventstore bench: PostgreSQL (${url.host}/${dbName}) …`);
  try {
    const postgres = await openPostgres({ url: url.toString(), max: 4 });
    try {
      const version = (await postgres.query<{ v: string }>(`SELECT current_setting('server_version') AS v`))
        .rows[0]?.v;
      rows.push(...(await benchDatabase(`postgres ${version ?? ''}`.trim(), postgres)));
    } finally {
      await postgres.close();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }

  console.log('');
  console.log(
    `counts: ${COUNTS.singles} single appends, ${COUNTS.batches} batches of 10, ${COUNTS.reads} events read, ` +
      `${COUNTS.latency} latency samples (one append every 5 ms); ${STREAMS} streams; node ${process.version}`,
  );
  printTable(rows);
  console.log(`\n(${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchEventStore().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
