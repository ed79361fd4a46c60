/**
 * `npm run bench -- cluster`: failover and hand-over times of cluster mode, with real processes. Three
 * zapwire nodes (`node dist/src/main.js`) on one fresh PostgreSQL database and the WhatsApp sandbox in
 * its own process; BENCH_CLUSTER_INSTANCES instances (default 30) paired by QR, spread by placement.
 *
 * - failover: SIGKILL the node holding the most instances; per instance, the time from the kill until
 *   its WhatsApp device is logged in again from another node (the sandbox sees the new login). Bounded
 *   below by the lease (CLUSTER_LEASE_MS, default 10 s here as in production).
 * - hand-over: restart the killed node, let it take its share, then SIGTERM another node; per instance,
 *   the time from the signal until its device is logged in again elsewhere.
 *
 * Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
 */
import {
  buildOnce,
  devicesOf,
  ownersOf,
  pairInstances,
  percentile,
  startCluster,
  waitReopened,
  type ClusterNodeProcess,
  type PairedInstance,
  type TestCluster,
} from '../../test/support/cluster.ts';

const INSTANCES = Number(process.env['BENCH_CLUSTER_INSTANCES'] ?? 30);
const LEASE_MS = Number(process.env['BENCH_CLUSTER_LEASE_MS'] ?? 10_000);
const HEARTBEAT_MS = Number(process.env['BENCH_CLUSTER_HEARTBEAT_MS'] ?? 2_000);

function table(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function logins(
  cluster: TestCluster,
  instances: readonly PairedInstance[],
): Promise<Map<string, number>> {
  const devices = await devicesOf(cluster, instances);
  return new Map(instances.map((i) => [i.id, devices.get(i.id)?.logins ?? 0]));
}

function byNode(owners: Map<string, string>, instances: readonly PairedInstance[], node: ClusterNodeProcess) {
  return instances.filter((i) => owners.get(i.id) === node.nodeId);
}

const seconds = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : '-');

export default async function bench(): Promise<void> {
  buildOnce();
  const cluster = await startCluster({
    nodes: 3,
    env: {
      CLUSTER_LEASE_MS: String(LEASE_MS),
      CLUSTER_HEARTBEAT_MS: String(HEARTBEAT_MS),
      LOG_LEVEL: 'error',
    },
  });
  const rows: string[][] = [];
  try {
    const pairStart = Date.now();
    const instances = await pairInstances(cluster, INSTANCES, { concurrency: 3, prefix: 'b' });
    const pairMs = Date.now() - pairStart;
    let owners = await ownersOf(cluster);
    const spread = cluster.nodes.map((n) => `${n.nodeId} ${byNode(owners, instances, n).length}`).join(', ');
    console.log(`paired ${instances.length} instances in ${seconds(pairMs)} (${spread})`);

    // Failover: SIGKILL the busiest node.
    const victim = [...cluster.nodes].sort(
      (a, b) => byNode(owners, instances, b).length - byNode(owners, instances, a).length,
    )[0]!;
    const killed = byNode(owners, instances, victim);
    let before = await logins(cluster, killed);
    const killAt = Date.now();
    await victim.kill();
    const failover = [...(await waitReopened(cluster, killed, before, killAt, 180_000)).values()];
    rows.push([
      `failover (SIGKILL ${victim.nodeId})`,
      String(killed.length),
      seconds(percentile(failover, 50)),
      seconds(Math.max(...failover)),
    ]);

    // Hand-over: restart the killed node, let it take its share, SIGTERM another one.
    await victim.start();
    await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
    owners = await ownersOf(cluster);
    const leaving = cluster.nodes.find((n) => n !== victim && byNode(owners, instances, n).length > 0)!;
    const handed = byNode(owners, instances, leaving);
    before = await logins(cluster, handed);
    const termAt = Date.now();
    const exitCode = await leaving.terminate();
    const handover = [...(await waitReopened(cluster, handed, before, termAt, 180_000)).values()];
    rows.push([
      `hand-over (SIGTERM ${leaving.nodeId}, exit ${String(exitCode)})`,
      String(handed.length),
      seconds(percentile(handover, 50)),
      seconds(Math.max(...handover)),
    ]);
    const replaced = [...(await devicesOf(cluster, instances)).values()].reduce((n, d) => n + d.replaced, 0);

    console.log(
      `\ncluster: 3 nodes, ${instances.length} instances, CLUSTER_LEASE_MS=${LEASE_MS}, CLUSTER_HEARTBEAT_MS=${HEARTBEAT_MS}; ` +
        `time from the signal until each moved instance's device is logged in again on another node\n`,
    );
    console.log(table(rows, ['scenario', 'instances moved', 'p50', 'max']));
    console.log(
      `\nlogins that found another socket of the device open (two connections at once): ${replaced}`,
    );
  } catch (error) {
    console.error(`cluster bench failed; logs kept in ${cluster.logDir}`);
    await cluster.close({ keepLogs: true });
    throw error;
  }
  await cluster.close();
}
