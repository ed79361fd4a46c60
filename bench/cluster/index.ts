/**
 * `npm run bench -- cluster`: failover and hand-over times of cluster mode, with real processes. Three
 * zapwire nodes (`node dist/src/main.js`) on one fresh PostgreSQL database and the WhatsApp sandbox in
 * its own process; BENCH_CLUSTER_INSTANCES instances (default 30) paired by QR, spread by placement, each
 * with its webhook on this process's receiver; a customer writes to them round-robin, 10 messages a second,
 * the whole time.
 *
 * - failover: SIGKILL the node that sends the webhooks (it holds the `sink-webhook` lease, and its share of
 *   the instances); per instance, the time from the kill until its WhatsApp device is logged in again from
 *   another node (the sandbox sees the new login). Bounded below by the lease (CLUSTER_LEASE_MS, default
 *   10 s here as in production). Webhook: the longest silence at the receiver after the kill, and the
 *   requests that carried an event id the receiver already had (repeats).
 * - hand-over: restart the killed node, let it take its share, then SIGTERM the node that sends the
 *   webhooks now; the same figures.
 *
 * For a before/after comparison, run this file in a checkout of the earlier version (it uses only the
 * HTTP API, the sandbox and the subscription table).
 * Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
 */
import { WebhookReceiver } from '../../test/support/webhook-receiver.ts';
import {
  buildOnce,
  devicesOf,
  ownersOf,
  pairInstances,
  percentile,
  startCluster,
  waitReopened,
  webhookFigures,
  webhookSender,
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

const CUSTOMER = '5511955550000';

/** The customer writes to the instances round-robin every 100 ms until stopped. */
function traffic(cluster: TestCluster, instances: readonly PairedInstance[]): { stop(): Promise<void> } {
  let running = true;
  let n = 0;
  const loop = (async () => {
    while (running) {
      const instance = instances[n++ % instances.length]!;
      await cluster.sandbox.sendText(CUSTOMER, instance.phone, `bench-${n}`).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

export default async function bench(): Promise<void> {
  buildOnce();
  const receiver = await WebhookReceiver.start();
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
    await cluster.sandbox.createAccount(CUSTOMER, 'Customer');
    const instances = await pairInstances(cluster, INSTANCES, {
      concurrency: 3,
      prefix: 'b',
      webhookUrl: receiver.url('/hook'),
    });
    const pairMs = Date.now() - pairStart;
    let owners = await ownersOf(cluster);
    const spread = cluster.nodes.map((n) => `${n.nodeId} ${byNode(owners, instances, n).length}`).join(', ');
    console.log(`paired ${instances.length} instances in ${seconds(pairMs)} (${spread})`);
    // Each Signal session is set up from the customer's side first (see test/e2e/cluster/three-nodes.test.ts).
    for (const instance of instances)
      await cluster.sandbox.sendText(CUSTOMER, instance.phone, `warm-${instance.name}`);
    await receiver.waitUntil(() => receiver.accepted().length >= instances.length, 120_000, 'the warm-up');
    const load = traffic(cluster, instances);
    await new Promise((r) => setTimeout(r, 5_000));
    const settle = 3 * LEASE_MS;

    // Failover: SIGKILL the node that sends the webhooks.
    const victim = (await webhookSender(cluster)) ?? cluster.nodes[0]!;
    const killed = byNode(owners, instances, victim);
    let before = await logins(cluster, killed);
    const killAt = Date.now();
    await victim.kill();
    const failover = [...(await waitReopened(cluster, killed, before, killAt, 180_000)).values()];
    await new Promise((r) => setTimeout(r, settle));
    const killHook = webhookFigures(receiver, killAt, Date.now());
    rows.push([
      `failover (SIGKILL ${victim.nodeId}, the webhook sender)`,
      String(killed.length),
      seconds(percentile(failover, 50)),
      seconds(Math.max(...failover)),
      seconds(killHook.gapMs),
      String(killHook.repeats),
    ]);

    // Hand-over: restart the killed node, let it take its share, SIGTERM the webhook sender of now.
    await victim.start();
    await new Promise((r) => setTimeout(r, settle));
    owners = await ownersOf(cluster);
    const leaving =
      (await webhookSender(cluster)) ??
      cluster.nodes.find((n) => n !== victim && byNode(owners, instances, n).length > 0)!;
    const handed = byNode(owners, instances, leaving);
    before = await logins(cluster, handed);
    const termAt = Date.now();
    const exitCode = await leaving.terminate();
    const handover = [...(await waitReopened(cluster, handed, before, termAt, 180_000)).values()];
    await new Promise((r) => setTimeout(r, settle));
    await load.stop();
    const termHook = webhookFigures(receiver, termAt, Date.now());
    rows.push([
      `hand-over (SIGTERM ${leaving.nodeId}, exit ${String(exitCode)})`,
      String(handed.length),
      seconds(percentile(handover, 50)),
      seconds(Math.max(...handover)),
      seconds(termHook.gapMs),
      String(termHook.repeats),
    ]);
    const replaced = [...(await devicesOf(cluster, instances)).values()].reduce((n, d) => n + d.replaced, 0);

    console.log(
      `\ncluster: 3 nodes, ${instances.length} instances, CLUSTER_LEASE_MS=${LEASE_MS}, CLUSTER_HEARTBEAT_MS=${HEARTBEAT_MS}; ` +
        `instances: time from the signal until each moved instance's device is logged in again on another node; ` +
        `webhook: longest silence at the receiver after the signal (10 inbound messages a second), requests repeating an event id\n`,
    );
    console.log(table(rows, ['scenario', 'instances moved', 'p50', 'max', 'webhook gap', 'webhook repeats']));
    console.log(
      `\nlogins that found another socket of the device open (two connections at once): ${replaced}`,
    );
  } catch (error) {
    console.error(`cluster bench failed; logs kept in ${cluster.logDir}`);
    await cluster.close({ keepLogs: true });
    await receiver.close();
    throw error;
  }
  await cluster.close();
  await receiver.close();
}
