/**
 * Leases and fencing in the database, and single-node safety, in-process:
 * - zw_fenced_append and the Baileys session store refuse a writer whose lease epoch is stale;
 * - a second zapwire on the same database (no CLUSTER_ENABLED) is a follower: it owns nothing and opens no
 *   socket while the first lives, and takes everything over when the first stops (hand-over).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Curve } from '@whiskeysockets/baileys';
import { createSqlEventStore } from '../../../src/store/sql-event-store.ts';
import { FencedWriteError } from '../../../src/store/errors.ts';
import { BaileysAuthStore } from '../../../src/whatsapp/baileys/auth-store.ts';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { openTestPostgres, databaseUrlForDataDir, type TestPostgres } from '../../support/postgres.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let pg: TestPostgres;
const apps: TestApp[] = [];

beforeAll(async () => {
  pg = await openTestPostgres({ migrations: MIGRATION_DIRECTORIES });
});
afterAll(async () => {
  for (const app of apps) await app.stop().catch(() => undefined);
  await pg.close();
});

async function setLease(instanceId: string, nodeId: string | null, epoch: number): Promise<void> {
  await pg.db.query(
    `INSERT INTO zw_instance_leases (instance_id, node_id, epoch, lease_until)
     VALUES ($1, $2, $3, now() + interval '1 minute')
     ON CONFLICT (instance_id) DO UPDATE SET node_id = $2, epoch = $3, lease_until = now() + interval '1 minute'`,
    [instanceId, nodeId, epoch],
  );
}

describe('fencing in the database', () => {
  it('refuses appends to an instance stream from a node whose lease epoch is stale', async () => {
    const id = `fence-${randomBytes(3).toString('hex')}`;
    let token = { instanceId: id, nodeId: 'node-a', epoch: 1 };
    const refused: string[] = [];
    const store = createSqlEventStore(pg.db, {
      fence: {
        tokenOf: async (stream) => (stream.endsWith(id) ? token : undefined),
        refused: (fence) => refused.push(`${fence.nodeId}@${fence.epoch}`),
      },
    });
    // The first event of an instance comes before it has a lease.
    await store.append(`instance-${id}`, [{ type: 'InstanceCreated', data: {} }], {
      expectedVersion: 'no_stream',
    });
    // Any other write without a lease is refused.
    await expect(store.append(`wa-${id}`, [{ type: 'X', data: {} }])).rejects.toBeInstanceOf(
      FencedWriteError,
    );
    await setLease(id, 'node-a', 1);
    await store.append(`wa-${id}`, [{ type: 'X', data: {} }]);
    // node-b takes the lease over: node-a (still at epoch 1) can no longer write either stream.
    await setLease(id, 'node-b', 2);
    await expect(store.append(`wa-${id}`, [{ type: 'X', data: {} }])).rejects.toBeInstanceOf(
      FencedWriteError,
    );
    await expect(
      store.append(`instance-${id}`, [{ type: 'Y', data: {} }], { expectedVersion: 1 }),
    ).rejects.toBeInstanceOf(FencedWriteError);
    expect(refused).toEqual(['node-a@1', 'node-a@1', 'node-a@1']);
    // The same node taking the lease back gets a new epoch: a write with the old one is still refused.
    await setLease(id, 'node-a', 3);
    await expect(store.append(`wa-${id}`, [{ type: 'X', data: {} }])).rejects.toBeInstanceOf(
      FencedWriteError,
    );
    token = { ...token, epoch: 3 };
    await store.append(`wa-${id}`, [{ type: 'X', data: {} }]);
    const { rows } = await pg.db.query<{ stream_id: string; n: number }>(
      `SELECT stream_id, count(*)::int AS n FROM es_events WHERE stream_id LIKE $1 GROUP BY stream_id ORDER BY 1`,
      [`%${id}`],
    );
    expect(rows).toEqual([
      { stream_id: `instance-${id}`, n: 1 },
      { stream_id: `wa-${id}`, n: 2 },
    ]);
    await store.close();
  });

  it('refuses WhatsApp session writes and the session removal from a node that lost the lease', async () => {
    const id = `session-${randomBytes(3).toString('hex')}`;
    const refused: string[] = [];
    const authStore = new BaileysAuthStore(pg.db, randomBytes(32), {
      fence: {
        tokenOf: async () => ({ nodeId: 'node-a', epoch: 1 }),
        refused: (instanceId) => refused.push(instanceId),
      },
    });
    await setLease(id, 'node-a', 1);
    const session = await authStore.open(id);
    await session.state.keys.set({
      'pre-key': { '1': Curve.generateKeyPair(), '4': Curve.generateKeyPair() },
    });
    const count = async () =>
      (
        await pg.db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM wa_auth_state WHERE instance_id = $1',
          [id],
        )
      ).rows[0]!.n;
    expect(await count()).toBe(2);

    await setLease(id, 'node-b', 2);
    // One-statement write (a key batch) and the transaction path (a batch with deletions).
    await expect(
      session.state.keys.set({ 'pre-key': { '2': Curve.generateKeyPair() } }),
    ).rejects.toBeInstanceOf(FencedWriteError);
    await expect(
      session.state.keys.set({ 'pre-key': { '1': null, '3': Curve.generateKeyPair() } }),
    ).rejects.toBeInstanceOf(FencedWriteError);
    await expect(authStore.remove(id)).rejects.toBeInstanceOf(FencedWriteError);
    expect(await count()).toBe(2);
    expect(refused).toEqual([id, id, id]);
  });
});

describe('single-node safety', () => {
  it('a second process on the same database follows: it owns nothing until the first hands over', async () => {
    const databaseUrl = await databaseUrlForDataDir(mkdtempSync(join(tmpdir(), 'zapwire-follower-')));
    const env = {
      DATABASE_URL: databaseUrl,
      SESSION_ENCRYPTION_KEY: '22'.repeat(32),
      TOKEN_PEPPER: 'follower-test-pepper-012345',
      CLUSTER_LEASE_MS: '1500',
      CLUSTER_HEARTBEAT_MS: '200',
    };
    const first = await startTestApp({ env });
    apps.push(first);
    const created = await first.request('POST', '/instance/create', {
      body: { name: 'only-once', token: 'only-once-token-0123' },
    });
    const id = created.body['id'] as string;
    first.fake.saveSession(id);
    const connected = await first.request('POST', '/instance/connect', { apikey: 'only-once-token-0123' });
    expect(connected.status, JSON.stringify(connected.body)).toBe(200);
    await eventually(() => first.fake.liveCount(id) === 1).catch((error: unknown) => {
      throw new Error(
        `${String(error)}; opened ${first.fake.openCount(id)}, holds ${first.zapwire.cluster.holds(id)}, ` +
          `health ${JSON.stringify(first.zapwire.cluster.health())}, state ${JSON.stringify(connected.body)}`,
      );
    });

    const second = await startTestApp({ env });
    apps.push(second);
    // Several heartbeats later the follower still owns nothing and opened nothing.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(second.zapwire.cluster.heldInstances()).toEqual([]);
    expect(second.fake.openCount(id)).toBe(0);
    expect(first.zapwire.cluster.holds(id)).toBe(true);
    const health = await second.request('GET', '/health', { apikey: null });
    expect(health.body['cluster']).toMatchObject({ mode: 'single', instances: 0, leasesHeld: true });
    // A command sent to the follower cannot open a second socket: the database refuses its write.
    const refused = await second.request('POST', '/instance/disconnect', { apikey: 'only-once-token-0123' });
    expect(refused.status).toBeGreaterThanOrEqual(500);
    expect(second.fake.openCount(id)).toBe(0);
    expect(first.fake.liveCount(id)).toBe(1);

    const overview = await first.request('GET', '/admin/cluster');
    expect(overview.status).toBe(200);
    const nodes = overview.body['nodes'] as { nodeId: string; instances: { instanceId: string }[] }[];
    expect(nodes.map((n) => n.nodeId).sort()).toEqual(
      [first.zapwire.cluster.selfId, second.zapwire.cluster.selfId].sort(),
    );
    expect(
      nodes.find((n) => n.nodeId === first.zapwire.cluster.selfId)?.instances.map((i) => i.instanceId),
    ).toEqual([id]);

    // The first stops (SIGTERM): it records the close and releases the lease; the follower opens it.
    second.fake.saveSession(id);
    const stopped = Date.now();
    await first.zapwire.stop();
    await eventually(() => second.fake.liveCount(id) === 1, 5_000);
    const handOverMs = Date.now() - stopped;
    expect(first.fake.liveCount(id)).toBe(0);
    expect(second.zapwire.cluster.holds(id)).toBe(true);
    const status = await second.request('GET', '/instance/status', { apikey: 'only-once-token-0123' });
    await eventually(
      async () =>
        (await second.request('GET', '/instance/status', { apikey: 'only-once-token-0123' })).body[
          'state'
        ] === 'open',
    );
    expect(status.status).toBe(200);
    console.log(`single-node safety: hand-over to the follower ${handOverMs} ms`);
  }, 60_000);
});
