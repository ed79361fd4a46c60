import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, TEST_SERVER_URL, type TestDatabase } from '../support/postgres.ts';
import { openPostgres, PreparedStatements, type PostgresDatabase } from '../../src/store/sql/postgres.ts';

describe('PreparedStatements (which texts run prepared)', () => {
  it('names a text from its second use, the same name each time, at most maxTexts texts', () => {
    const prepared = new PreparedStatements(2);
    expect(prepared.nameFor('SELECT $1::int')).toBeUndefined();
    const name = prepared.nameFor('SELECT $1::int');
    expect(name).toMatch(/^zw_[0-9a-f]{24}$/);
    expect(prepared.nameFor('SELECT $1::int')).toBe(name);
    prepared.nameFor('SELECT $1::text');
    expect(prepared.nameFor('SELECT $1::text')).toMatch(/^zw_/);
    expect(prepared.nameFor('SELECT $1::text')).not.toBe(name);
    // The cap is reached: a third text stays unnamed however often it runs.
    prepared.nameFor('SELECT $1::bigint');
    expect(prepared.nameFor('SELECT $1::bigint')).toBeUndefined();
    expect(prepared.nameFor('SELECT $1::bigint')).toBeUndefined();
  });
});

describe('openPostgres with prepared statements (real server)', () => {
  let database: TestDatabase;
  let db: PostgresDatabase;
  let unprepared: PostgresDatabase;

  beforeAll(async () => {
    database = await createTestDatabase(TEST_SERVER_URL);
    db = await openPostgres({ url: database.url, max: 1 });
    unprepared = await openPostgres({ url: database.url, max: 1, preparedStatements: false });
  });
  afterAll(async () => {
    await db.close();
    await unprepared.close();
    await database.drop();
  });

  const preparedOnConnection = async (on: PostgresDatabase): Promise<string[]> =>
    (
      await on.query<{ statement: string }>(
        "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'zw\\_%' AND statement <> $1",
        ['-'],
      )
    ).rows.map((r) => r.statement);

  it('runs a repeated statement prepared on the connection, with the same results, in and out of transactions', async () => {
    const text = 'SELECT $1::int + 1 AS n';
    expect((await db.query<{ n: number }>(text, [1])).rows).toEqual([{ n: 2 }]);
    expect((await db.query<{ n: number }>(text, [2])).rows).toEqual([{ n: 3 }]);
    expect(await db.transaction((tx) => tx.query<{ n: number }>(text, [3]))).toMatchObject({
      rows: [{ n: 4 }],
    });
    expect(await preparedOnConnection(db)).toContain(text);
  });

  it('never prepares a statement without parameters (several statements in one text stay possible)', async () => {
    await db.exec('CREATE TABLE IF NOT EXISTS t_prep (v int); INSERT INTO t_prep VALUES (1)');
    await db.query('SELECT count(*) FROM t_prep');
    await db.query('SELECT count(*) FROM t_prep');
    expect(await preparedOnConnection(db)).not.toContain('SELECT count(*) FROM t_prep');
  });

  it('DATABASE_PREPARED_STATEMENTS=false: nothing is prepared', async () => {
    for (let i = 0; i < 3; i++) await unprepared.query('SELECT $1::int AS n', [i]);
    expect(await preparedOnConnection(unprepared)).toEqual([]);
  });
});
