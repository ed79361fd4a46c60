/**
 * Migration 1004: a database written before projections kept their state in the store's consumer tables
 * (checkpoints in rm_projection_checkpoints, skipped events in rm_projection_poison) is migrated with
 * nothing lost: the checkpoints move to es_subscriptions as `projection:<name>`, the skipped events to
 * es_dead_letters, the old tables go, and the projections resume where they were.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectionRunner } from '../../../projections/runner.ts';
import type { Projection } from '../../../projections/projection.ts';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { listMigrations, migrate } from '../../../src/store/migrate.ts';
import { createSqlEventStore } from '../../../src/store/sql-event-store.ts';
import type { RecordedEvent } from '../../../src/store/port.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';

let pg: TestPostgres;
let before: string;

beforeAll(async () => {
  // Every migration up to the one under test, applied as an older zapwire would have.
  before = mkdtempSync(join(tmpdir(), 'zapwire-migrations-'));
  for (const file of listMigrations(MIGRATION_DIRECTORIES)) {
    if (file.name >= '1004') break;
    copyFileSync(file.path, join(before, file.name));
  }
  pg = await openTestPostgres();
  await migrate(pg.db, [before]);
});
afterAll(async () => {
  await pg?.close();
  rmSync(before, { recursive: true, force: true });
});

function counting(name: string, applied: string[]): Projection {
  return {
    name,
    filter: { streamPrefixes: ['mig-'] },
    tables: [],
    async apply(_tx, event: RecordedEvent) {
      applied.push(event.id);
    },
  };
}

describe('migration 1004: projection checkpoints and skipped events move to the store tables', () => {
  it('copies every row, drops the old tables, and the projections resume where they were', async () => {
    const store = createSqlEventStore(pg.db);
    const first = await store.append('mig-1', [
      { type: 'A', data: {} },
      { type: 'B', data: {} },
    ]);
    const second = await store.append('mig-1', [{ type: 'C', data: {} }]);
    const poison = first.events[1]!;
    await pg.db.query(
      `INSERT INTO rm_projection_checkpoints (projection, checkpoint) VALUES ('instances', $1), ('instance_logs', $2)`,
      [first.position, ''],
    );
    await pg.db.query(
      `INSERT INTO rm_projection_poison (projection, position, event_id, stream, event_type, error, skipped_at)
       VALUES ('instances', $1, $2, 'mig-1', 'B', 'duplicate key value violates unique constraint', '2026-01-02T03:04:05Z'),
              ('instances', '00000000000000000001:00000000000000000001', 'not-a-uuid', 'x', 'X', 'junk', now())`,
      [poison.position, poison.id],
    );

    await migrate(pg.db, MIGRATION_DIRECTORIES);

    const tables = await pg.db.query<{ name: string | null }>(
      `SELECT to_regclass('rm_projection_checkpoints')::text AS name
       UNION ALL SELECT to_regclass('rm_projection_poison')::text`,
    );
    expect(tables.rows.map((r) => r.name)).toEqual([null, null]);
    expect(await store.readCheckpoint('projection:instances')).toBe(first.position);
    expect(await store.readCheckpoint('projection:instance_logs')).toBe('');
    const letters = await store.listDeadLetters('projection:instances');
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({
      subscription: 'projection:instances',
      eventId: poison.id,
      stream: 'mig-1',
      position: poison.position,
      eventType: 'B',
      error: 'duplicate key value violates unique constraint',
      attempts: 3,
      instanceId: undefined,
      detail: { projection: 'instances' },
    });
    expect(letters[0]!.failedAt.toISOString()).toBe('2026-01-02T03:04:05.000Z');

    // The projections go on from the migrated checkpoints: nothing applied twice, nothing skipped.
    const applied = { instances: [] as string[], instance_logs: [] as string[] };
    const runner = new ProjectionRunner(
      store,
      pg.db,
      [counting('instances', applied.instances), counting('instance_logs', applied.instance_logs)],
      pino({ level: 'silent' }),
      50,
    );
    await runner.start();
    expect(await runner.waitFor(second.position, 10_000)).toBe(true);
    expect(applied.instances).toEqual([second.events[0]!.id]);
    expect(applied.instance_logs).toEqual([...first.events, ...second.events].map((e) => e.id));
    expect(await runner.poisonEvents()).toMatchObject([{ projection: 'instances', eventId: poison.id }]);
    expect(await runner.poisonCounts()).toEqual(
      new Map([
        ['instances', 1],
        ['instance_logs', 0],
      ]),
    );
    await runner.stop();
    await store.close();
  });
});
