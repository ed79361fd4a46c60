/**
 * Issue 22 item 5: what a node does every heartbeat does not grow with its instances. With a few hundred
 * idle instances and a fast heartbeat, a node keeps every lease (it renews them) without rewriting a
 * single lease row, and it does not ask for the list of every instance each tick (only at start and then
 * every `reconcileMs`). Before, each heartbeat rewrote every lease row and read every instance. A late
 * renewal nobody noticed keeps everything; a node whose row another node deleted gives everything up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ClusterMember, type OwnedInstances } from '../../../src/cluster/node.ts';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';

let pg: TestPostgres;
beforeAll(async () => {
  pg = await openTestPostgres({ migrations: MIGRATION_DIRECTORIES });
});
afterAll(async () => {
  await pg?.close();
});

const INSTANCES = 300;
const HEARTBEAT_MS = 50;

/** Row versions of the lease table: a row rewritten by an UPDATE gets a new xmin. */
async function leaseRowVersions(): Promise<Map<string, string>> {
  const { rows } = await pg.db.query<{ instance_id: string; xmin: string }>(
    'SELECT instance_id, xmin::text AS xmin FROM zw_instance_leases',
  );
  return new Map(rows.map((r) => [r.instance_id, r.xmin]));
}

describe('an idle node', () => {
  it('renews every lease without rewriting lease rows, and does not list every instance each tick', async () => {
    const ids = Array.from({ length: INSTANCES }, (_, i) => `idle-${i}`);
    let listed = 0;
    const adopted = new Set<string>();
    let drops = 0;
    const owned: OwnedInstances = {
      adopt: (id) => void adopted.add(id),
      drop: (id) => {
        drops += 1;
        adopted.delete(id);
      },
      handOver: async () => undefined,
      connected: () => [],
      movable: () => true,
      instanceIds: async () => {
        listed += 1;
        return ids;
      },
    };
    const member = new ClusterMember({
      db: pg.db,
      logger: pino({ level: 'silent' }),
      nodeId: 'idle-node',
      address: 'http://127.0.0.1:1',
      mode: 'single',
      leaseMs: 1_000,
      heartbeatMs: HEARTBEAT_MS,
      movesPerTick: 4,
    });
    await member.start(owned);
    try {
      expect(adopted.size).toBe(INSTANCES);
      const listedAtStart = listed;
      const before = await leaseRowVersions();
      const { rows: heartbeat } = await pg.db.query<{ at: Date }>(
        'SELECT heartbeat_at AS at FROM zw_cluster_nodes WHERE node_id = $1',
        ['idle-node'],
      );
      // Far past the lease: only renewals keep the leases.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const after = await leaseRowVersions();
      const rewritten = [...after].filter(([id, xmin]) => before.get(id) !== xmin).length;
      expect(rewritten).toBe(0);
      expect(listed - listedAtStart).toBe(0);
      expect(ids.every((id) => member.holds(id))).toBe(true);
      const { rows: later } = await pg.db.query<{ at: Date }>(
        'SELECT heartbeat_at AS at FROM zw_cluster_nodes WHERE node_id = $1',
        ['idle-node'],
      );
      expect(new Date(later[0]!.at).getTime()).toBeGreaterThan(new Date(heartbeat[0]!.at).getTime());
      const owner = await member.ownerOf('idle-7');
      expect(owner).toMatchObject({ nodeId: 'idle-node', self: true });

      // A renewal that comes late (a stall nobody else noticed) keeps every instance: no drop, no churn.
      await pg.db.query(`UPDATE zw_cluster_nodes SET lease_until = now() - interval '1 second'`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(drops).toBe(0);
      expect(ids.every((id) => member.holds(id))).toBe(true);
      expect((await leaseRowVersions()).size).toBe(INSTANCES);

      // Another node that found the lease expired deletes the row and frees the leases in one statement:
      // this node drops them all, joins as a new incarnation and takes them back with new epochs.
      const epochs = new Map(member.heldInstances().map((h) => [h.instanceId, h.epoch]));
      await pg.db.query(
        `WITH dead AS (DELETE FROM zw_cluster_nodes RETURNING node_id, incarnation)
         UPDATE zw_instance_leases l SET node_id = NULL, incarnation = NULL, lease_until = now()
           FROM dead WHERE l.node_id = dead.node_id AND l.incarnation = dead.incarnation`,
      );
      await expect.poll(() => drops, { timeout: 5_000 }).toBe(INSTANCES);
      await expect.poll(() => member.heldInstances().length, { timeout: 5_000 }).toBe(INSTANCES);
      expect(member.heldInstances().every((h) => h.epoch === epochs.get(h.instanceId)! + 1)).toBe(true);
      expect(adopted.size).toBe(INSTANCES);
    } finally {
      await member.stop();
    }
  });
});
