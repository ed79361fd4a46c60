/**
 * The restore after a start (issue 26), with real Baileys on the sandbox and the store on PostgreSQL:
 * four paired instances come back most recently active first (by their WhatsApp traffic in the store),
 * /health shows `restoring: { done, total }` until every one had its turn, a command for an instance
 * still waiting answers 503 with Retry-After and a message (and moves it to the front) instead of
 * failing as disconnected or timing out, and the adaptive default restores them all too.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { dropDatabaseOfDataDir } from '../../support/postgres.ts';
import { eventually, startE2eApp, waitForQr, waitForState, type E2eApp } from './harness.ts';

const NAMES = ['a', 'b', 'c', 'd'] as const;
const PHONES: Record<(typeof NAMES)[number], string> = {
  a: '5511977770001',
  b: '5511977770002',
  c: '5511977770003',
  d: '5511977770004',
};
const CUSTOMER = '5511977770099';

let sandbox: Sandbox;
let app: E2eApp;
let dataDir: string;
const ids: Record<string, string> = {};
const tokens: Record<string, string> = {};

async function pair(name: (typeof NAMES)[number]): Promise<void> {
  sandbox.control.createAccount({ phoneNumber: PHONES[name], name });
  const created = await app.request<{ token: string }>('POST', '/instance/create', {
    body: { name: `restore-${name}` },
  });
  expect(created.status).toBe(201);
  tokens[name] = created.body.token;
  await app.request('POST', '/instance/connect', { body: { instanceName: `restore-${name}` } });
  const qr = await waitForQr(app, `restore-${name}`);
  await sandbox.control.scanQr(PHONES[name], qr.code);
  await waitForState(app, `restore-${name}`, 'open');
  const { rows } = await app.zapwire.db.query<{ id: string }>('SELECT id FROM rm_instances WHERE name = $1', [
    `restore-${name}`,
  ]);
  ids[name] = rows[0]!.id;
}

/** The customer writes to the instance; resolves once its `wa-` stream has the message. */
async function traffic(name: (typeof NAMES)[number]): Promise<void> {
  const before = await lastAppend(name);
  await sandbox.control.sendText(CUSTOMER, PHONES[name], `hello ${name}`);
  await eventually(`${name}'s message stored`, async () => (await lastAppend(name)) !== before);
}

async function lastAppend(name: string): Promise<string | undefined> {
  const { rows } = await app.zapwire.db.query<{ at: string }>(
    `SELECT updated_at::text AS at FROM es_streams WHERE stream_id = $1`,
    [`wa-${ids[name]}`],
  );
  return rows[0]?.at;
}

async function headPosition(): Promise<string> {
  const { rows } = await app.zapwire.db.query<{ head: string }>(
    'SELECT COALESCE(max(global_position), 0)::text AS head FROM es_events',
  );
  return rows[0]!.head;
}

/** Instances in the order they opened since `position`. */
async function openedSince(position: string): Promise<string[]> {
  const { rows } = await app.zapwire.db.query<{ stream_id: string }>(
    `SELECT stream_id FROM es_events WHERE event_type = 'InstanceOpened' AND global_position > $1
      ORDER BY global_position`,
    [position],
  );
  const byId = new Map(Object.entries(ids).map(([name, id]) => [`instance-${id}`, name]));
  return rows.map((row) => byId.get(row.stream_id) ?? row.stream_id);
}

interface Health {
  readonly status: string;
  readonly restoring?: { readonly done: number; readonly total: number };
}

async function restartWith(env: Record<string, string>): Promise<void> {
  await app.stop({ keepData: true });
  app = await startE2eApp({ server: sandbox, dataDir, env });
}

beforeAll(async () => {
  sandbox = await startSandbox();
  sandbox.control.createAccount({ phoneNumber: CUSTOMER, name: 'Customer' });
  app = await startE2eApp({ server: sandbox, env: { RESTORE_CONCURRENCY: '1' } });
  dataDir = app.dataDir;
  for (const name of NAMES) await pair(name);
  // Activity: d, then c, then a wrote last (b never): a, c, d are restored in that order, b last.
  await traffic('d');
  await traffic('c');
  await traffic('a');
}, 180_000);

afterAll(async () => {
  await app?.stop({ keepData: true });
  await sandbox?.close();
  if (dataDir) {
    await dropDatabaseOfDataDir(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('restore plan after a start', () => {
  it('restores the most recently active first and shows the progress on /health', async () => {
    const mark = await headPosition();
    await restartWith({ RESTORE_CONCURRENCY: '1' });
    const seen: Array<{ done: number; total: number }> = [];
    await eventually(
      'every instance restored',
      async () => {
        const reply = await app.request<Health>('GET', '/health', { apikey: null });
        expect(reply.status).toBe(200);
        expect(reply.body.status).toBe('ok');
        const restoring = reply.body.restoring!;
        seen.push(restoring);
        return restoring.total === 4 && restoring.done === 4;
      },
      60_000,
      20,
    );
    // The count only grows, and it was seen before the end (the health check does not wait for it).
    expect(seen.map((s) => s.done)).toEqual([...seen.map((s) => s.done)].sort((x, y) => x - y));
    expect(seen[0]!.done).toBeLessThan(4);
    expect(await openedSince(mark)).toEqual(['a', 'c', 'd', 'b']);
    for (const name of NAMES) await waitForState(app, `restore-${name}`, 'open');
  }, 120_000);

  it('answers a command for an instance still waiting with 503 and Retry-After, then serves it first', async () => {
    const mark = await headPosition();
    await restartWith({ RESTORE_CONCURRENCY: '1' });
    // b is last in the plan: one restore at a time, so it is still waiting now.
    const refused = await app.request<{ error: { code: string; message: string } }>('POST', '/send/text', {
      apikey: tokens['b']!,
      body: { number: CUSTOMER, text: 'too early' },
    });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('ZW_ERR_UNAVAILABLE');
    expect(refused.body.error.message).toMatch(/waiting to be restored.*try again in \d+ s/);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Reads still answer from the read model meanwhile.
    const read = await app.request('GET', '/instance/status', { apikey: tokens['b']! });
    expect(read.status).toBe(200);
    // Asked for, b went to the front: it opens first or second (a may have started already).
    const sent = await eventually(
      'b sends once restored',
      async () => {
        const reply = await app.request('POST', '/send/text', {
          apikey: tokens['b']!,
          body: { number: CUSTOMER, text: 'now' },
        });
        return reply.status === 200 ? reply : undefined;
      },
      60_000,
      100,
    );
    expect(sent.status).toBe(200);
    await eventually('all open', async () => (await openedSince(mark)).length === 4, 60_000);
    expect((await openedSince(mark)).indexOf('b')).toBeLessThanOrEqual(1);
  }, 120_000);

  it('the adaptive default restores every instance, and /metrics says how long it took', async () => {
    await restartWith({});
    await eventually(
      'every instance restored',
      async () => {
        const reply = await app.request<Health>('GET', '/health', { apikey: null });
        return reply.body.restoring?.done === 4 && reply.body.restoring.total === 4;
      },
      60_000,
    );
    for (const name of NAMES) await waitForState(app, `restore-${name}`, 'open');
    const metrics = await app.request<string>('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^zapwire_restore_instances\{state="done"\} 4$/m);
    expect(metrics.body).toMatch(/^zapwire_restore_instances\{state="total"\} 4$/m);
    const seconds = Number(/^zapwire_restore_seconds (\S+)$/m.exec(metrics.body)?.[1]);
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60);
    expect(metrics.body).toMatch(/^zapwire_restore_concurrency \d+$/m);
  }, 120_000);
});
