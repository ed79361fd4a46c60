/**
 * Finding 3: concurrent creates with one name must not wedge the instances projection, and no projection
 * may wedge on an event it cannot apply: it skips it, records it, and /health and /metrics say so.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendPoisonInstance } from '../../support/poison.ts';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let database: TestDatabase;
let t: TestApp;

beforeAll(async () => {
  database = await createTestDatabase();
  t = await startTestApp({ env: { DATABASE_URL: database.url } });
});
afterAll(async () => {
  await t?.stop();
  await database?.drop();
});

async function createWorks(name: string): Promise<void> {
  const started = Date.now();
  const created = await t.request<{ token: string }>('POST', '/instance/create', { body: { name } });
  expect(created.status).toBe(201);
  expect(Date.now() - started).toBeLessThan(5_000);
  const status = await t.request('GET', '/instance/status', { apikey: created.body.token });
  expect(status.status).toBe(200);
}

describe('instances projection', () => {
  it('lets exactly one of many concurrent creates with one name win, and keeps working after', async () => {
    const replies = await Promise.all(
      Array.from({ length: 6 }, () => t.request('POST', '/instance/create', { body: { name: 'same-name' } })),
    );
    expect(replies.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409]);
    await createWorks('after-the-race');
    const all = await t.request<Array<{ name: string }>>('GET', '/instance/all');
    expect(all.body.filter((i) => i.name === 'same-name')).toHaveLength(1);
    expect(await t.zapwire.projections.poisonEvents()).toEqual([]);
    const health = await t.request('GET', '/health', { apikey: null });
    expect(health.body).toMatchObject({ status: 'ok', alerts: [] });
  });

  it('skips and records an event it cannot apply, alerts, and goes on projecting', async () => {
    // A second InstanceCreated with a name already taken breaks rm_instances_name_key every time.
    const poisonId = randomUUID();
    await appendPoisonInstance(t.zapwire.store, poisonId, 'after-the-race');
    await createWorks('after-the-poison');
    const poison = await t.zapwire.projections.poisonEvents();
    expect(poison).toHaveLength(1);
    expect(poison[0]).toMatchObject({ projection: 'instances', stream: `instance-${poisonId}` });
    const health = await t.request<{ status: string; alerts: string[] }>('GET', '/health', { apikey: null });
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('degraded');
    expect(health.body.alerts.join(' ')).toMatch(/projection instances skipped 1 event/);
    const metrics = await t.request('GET', '/metrics');
    expect(String(metrics.body)).toMatch(/zapwire_projection_poison_events\{projection="instances"\} 1/);
    // A rebuild meets the same event, skips it again, and still finishes.
    const rebuilt = await t.zapwire.projections.rebuild('instances');
    expect(rebuilt.events).toBeGreaterThan(0);
    const all = await t.request<Array<{ name: string }>>('GET', '/instance/all');
    expect(all.body.map((i) => i.name).sort()).toEqual(['after-the-poison', 'after-the-race', 'same-name']);
  });
});
