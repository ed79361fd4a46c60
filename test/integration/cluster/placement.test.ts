/**
 * Placement with CLUSTER_ENABLED, in-process (two apps with their own fake WhatsApp sides on one database):
 * a node that joins takes its share of the instances, one per heartbeat (RESTORE_CONCURRENCY=1), with at
 * most one open connection per instance at every moment, and leaves an instance being paired where it is;
 * new instances go to the least-loaded node.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrlForDataDir } from '../../support/postgres.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.stop().catch(() => undefined);
});

describe('placement', () => {
  it('a joining node takes its share paced, never two connections for one instance; new instances go to the least loaded', async () => {
    const env = {
      DATABASE_URL: await databaseUrlForDataDir(mkdtempSync(join(tmpdir(), 'zapwire-placement-'))),
      SESSION_ENCRYPTION_KEY: '33'.repeat(32),
      TOKEN_PEPPER: 'placement-test-pepper-0123',
      CLUSTER_ENABLED: 'true',
      CLUSTER_SECRET: 'cluster-secret-for-tests-0123456789abcdef',
      CLUSTER_LEASE_MS: '1500',
      CLUSTER_HEARTBEAT_MS: '250',
      RESTORE_CONCURRENCY: '1',
    };
    const a = await startTestApp({ env });
    apps.push(a);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const token = `placement-token-${i}-abcdef`;
      const created = await a.request('POST', '/instance/create', { body: { name: `p${i}`, token } });
      expect(created.status).toBe(201);
      const id = created.body['id'] as string;
      ids.push(id);
      a.fake.saveSession(id);
      await a.request('POST', '/instance/connect', { apikey: token });
    }
    await eventually(() => ids.every((id) => a.fake.liveCount(id) === 1), 45_000);
    // One more, being paired right now: its QR is on a user's screen, so it must not move.
    const pairing = await a.request('POST', '/instance/create', {
      body: { name: 'p-pairing', token: 'placement-pairing-token-0' },
    });
    const pairingId = pairing.body['id'] as string;
    await a.request('POST', '/instance/connect', { apikey: 'placement-pairing-token-0' });
    (await eventually(() => a.fake.connection(pairingId))).issueQr();
    await eventually(
      async () =>
        (await a.request('GET', '/instance/status', { apikey: 'placement-pairing-token-0' })).body[
          'state'
        ] === 'qr',
    );
    expect(a.zapwire.cluster.heldInstances()).toHaveLength(7);

    const b = await startTestApp({ env });
    apps.push(b);
    for (const id of ids) b.fake.saveSession(id);
    // Sample both sides while the share moves: one connection per instance at most, one move at a time.
    const counts: number[] = [];
    let overlap = 0;
    const sampler = setInterval(() => {
      for (const id of ids) if (a.fake.liveCount(id) + b.fake.liveCount(id) > 1) overlap += 1;
      counts.push(b.zapwire.cluster.heldInstances().length);
    }, 20);
    try {
      await eventually(
        () =>
          b.zapwire.cluster.heldInstances().length === 3 &&
          ids.filter((id) => b.fake.liveCount(id) === 1).length === 3,
        45_000,
      );
    } finally {
      clearInterval(sampler);
    }
    expect(overlap).toBe(0);
    expect(a.zapwire.cluster.heldInstances()).toHaveLength(4);
    expect(a.zapwire.cluster.holds(pairingId)).toBe(true);
    expect(a.fake.liveCount(pairingId)).toBe(1);
    const steps = counts.slice(1).map((n, i) => n - counts[i]!);
    expect(Math.max(...steps)).toBe(1);
    // Every instance is open exactly once in the cluster.
    for (const id of ids) expect(a.fake.liveCount(id) + b.fake.liveCount(id)).toBe(1);
    // A few heartbeats later nothing moves back and forth.
    const before = b.zapwire.cluster
      .heldInstances()
      .map((h) => h.instanceId)
      .sort();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(
      b.zapwire.cluster
        .heldInstances()
        .map((h) => h.instanceId)
        .sort(),
    ).toEqual(before);

    // New instances go to the least-loaded node (b: 3 against 4), then a tie goes to the creating node.
    const first = await a.request('POST', '/instance/create', { body: { name: 'p-new-1' } });
    const owner = await b.zapwire.cluster.ownerOf(first.body['id'] as string);
    expect(owner?.nodeId).toBe(b.zapwire.cluster.selfId);
    expect(owner?.self).toBe(true);
    await eventually(() => b.zapwire.cluster.holds(first.body['id'] as string), 5_000);
    const second = await a.request('POST', '/instance/create', { body: { name: 'p-new-2' } });
    const secondOwner = await a.zapwire.cluster.ownerOf(second.body['id'] as string);
    expect(secondOwner?.nodeId).toBe(a.zapwire.cluster.selfId);

    const overview = await b.request('GET', '/admin/cluster');
    const nodes = overview.body['nodes'] as { nodeId: string; instances: unknown[] }[];
    expect(nodes.map((n) => n.instances.length).sort()).toEqual([4, 5]);
    expect(overview.body['unowned']).toEqual([]);
  }, 120_000);
});
