/**
 * Issue #16's three-node test, with real processes: three zapwire nodes on one PostgreSQL, the sandbox,
 * paired instances (CLUSTER_TEST_INSTANCES, 9 by default to fit a loaded 2-core machine; 60 for the
 * full run), API requests round-robin to every node and inbound messages from a simulated phone to a
 * webhook the whole time. One node is SIGKILLed and restarted, another SIGTERMed. Asserted: never two
 * connections for one WhatsApp device (the sandbox counts every login that found another socket of the
 * device open), every instance open again (failover within 30 s, hand-over within 5 s), no 500 from any
 * node, and every inbound message delivered to the webhook (duplicates only with the same event id).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
} from '../../support/cluster.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';

const INSTANCES = Number(process.env['CLUSTER_TEST_INSTANCES'] ?? 9);
const LEASE_MS = 5_000;
const CUSTOMER = '5511988887777';

let cluster: TestCluster | undefined;
let receiver: WebhookReceiver | undefined;
let failed = false;

beforeAll(() => buildOnce(), 300_000);
afterAll(async () => {
  await receiver?.close();
  // Logs stay for a failed run (the path is printed).
  if (failed && cluster) console.error(`cluster logs kept in ${cluster.logDir}`);
  await cluster?.close({ keepLogs: failed });
});

interface Inbound {
  readonly text: string;
  readonly instance: PairedInstance;
  /** When the sandbox accepted it (it has written it to the device's socket by then, or queued it). */
  readonly sentAt: number;
}

/** API calls and inbound messages, round-robin, until stopped; counts what every node answered. */
function startTraffic(c: TestCluster, instances: readonly PairedInstance[]) {
  const inbound: Inbound[] = [];
  const statuses = new Map<number, number>();
  const serverErrors: string[] = [];
  let networkErrors = 0;
  let running = true;
  let k = 0;
  const api = (async () => {
    while (running) {
      const instance = instances[k % instances.length]!;
      const node = c.next();
      const send = k % 3 === 0;
      k++;
      try {
        const answer = send
          ? await node.request('POST', '/send/text', {
              apikey: instance.token,
              body: { number: CUSTOMER, text: `out-${k}` },
              timeoutMs: 45_000,
            })
          : await node.request('GET', '/instance/status', { apikey: instance.token, timeoutMs: 10_000 });
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status >= 500 && answer.status !== 503)
          serverErrors.push(
            `${node.nodeId} ${send ? 'send' : 'status'} ${answer.status} ${JSON.stringify(answer.body)}`,
          );
      } catch {
        // A node being killed drops its connections: counted, not failed.
        networkErrors++;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  let n = 0;
  const phone = (async () => {
    while (running) {
      const instance = instances[n % instances.length]!;
      const text = `in-${String(n).padStart(4, '0')}-${instance.name}`;
      n++;
      try {
        await c.sandbox.sendText(CUSTOMER, instance.phone, text);
        inbound.push({ text, instance, sentAt: Date.now() });
      } catch (error) {
        serverErrors.push(`sandbox send ${text}: ${String(error)}`);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  return {
    inbound,
    statuses,
    serverErrors,
    networkErrors: () => networkErrors,
    async stop() {
      running = false;
      await Promise.all([api, phone]);
    },
  };
}

async function loginsOf(c: TestCluster, instances: readonly PairedInstance[]): Promise<Map<string, number>> {
  const devices = await devicesOf(c, instances);
  return new Map(instances.map((i) => [i.id, devices.get(i.id)?.logins ?? 0]));
}

async function replacedSoFar(c: TestCluster, instances: readonly PairedInstance[]): Promise<string[]> {
  const devices = await devicesOf(c, instances);
  return instances.flatMap((i) => {
    const d = devices.get(i.id);
    return d && d.replaced > 0 ? [`${i.name}: ${d.replaced} login(s) while another socket was open`] : [];
  });
}

/** Which of these texts the shared event log holds (in any event's data). */
async function textsInLog(c: TestCluster, texts: readonly string[]): Promise<Set<string>> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: c.database.url });
  await client.connect();
  try {
    const found = new Set<string>();
    for (const text of texts) {
      const { rows } = await client.query(
        "SELECT 1 FROM es_events WHERE data::text LIKE '%' || $1 || '%' LIMIT 1",
        [text],
      );
      if (rows.length > 0) found.add(text);
    }
    return found;
  } finally {
    await client.end();
  }
}

function ownedBy(
  owners: Map<string, string>,
  node: ClusterNodeProcess,
  instances: readonly PairedInstance[],
) {
  return instances.filter((i) => owners.get(i.id) === node.nodeId);
}

describe('three nodes', () => {
  it(`keep ${INSTANCES} instances open through SIGKILL, restart and SIGTERM with one connection per device`, async () => {
    try {
      receiver = await WebhookReceiver.start();
      cluster = await startCluster({
        nodes: 3,
        env: { CLUSTER_LEASE_MS: String(LEASE_MS), CLUSTER_HEARTBEAT_MS: '1000' },
      });
      const c = cluster;
      await c.sandbox.createAccount(CUSTOMER, 'Customer');
      const instances = await pairInstances(c, INSTANCES, {
        webhookUrl: receiver.url('/hook'),
        concurrency: 3,
      });
      const [one, two, three] = c.nodes as [ClusterNodeProcess, ClusterNodeProcess, ClusterNodeProcess];

      // Watches the sandbox the whole time: any second socket for a device fails the test.
      const violations: string[] = [];
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          for (const v of await replacedSoFar(c, instances).catch(() => []))
            if (!violations.includes(v)) violations.push(v);
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      // The customer writes to every instance first and the test waits for those at the webhook, so each
      // Signal session is set up from one side before the instances also write to the customer. Otherwise
      // the first message each way can cross (both sides start a session at once), and the loser's next
      // messages fail to decrypt until a retry receipt makes the sender start over. The sandbox answers
      // those now (packages/sandbox/README.md), but a message that needed one arrives late, and the test's
      // counts should not depend on how late.
      const warmUp = instances.map((instance) => `warm-up-${instance.name}`);
      for (const [i, instance] of instances.entries())
        await c.sandbox.sendText(CUSTOMER, instance.phone, warmUp[i]!);
      const hook = receiver;
      await hook.waitUntil(
        () => {
          const bodies = hook.accepted('/hook').map((r) => r.rawBody);
          return warmUp.every((text) => bodies.some((body) => body.includes(text)));
        },
        60_000,
        'the warm-up messages at the webhook',
      );
      const traffic = startTraffic(c, instances);
      await new Promise((r) => setTimeout(r, 3_000));

      // SIGKILL node-1: its instances open on the others within 30 s, no QR.
      let owners = await ownersOf(c);
      expect(instances.every((i) => owners.has(i.id))).toBe(true);
      const killed = ownedBy(owners, one, instances);
      let before = await loginsOf(c, killed);
      const killedTheSender = (await webhookSender(c)) === one;
      const killAt = Date.now();
      await one.kill();
      const failover = await waitReopened(c, killed, before, killAt, 60_000);
      owners = await ownersOf(c);
      for (const i of killed) expect(owners.get(i.id)).not.toBe(one.nodeId);

      // Restart it: it joins again and takes its share.
      await one.start();
      await new Promise((r) => setTimeout(r, 3 * LEASE_MS));
      const killHook = webhookFigures(receiver, killAt, Date.now());

      // SIGTERM node-2: it hands its instances over, the others open them within 5 s.
      owners = await ownersOf(c);
      const handed = ownedBy(owners, two, instances);
      before = await loginsOf(c, handed);
      const terminatedTheSender = (await webhookSender(c)) === two;
      const termAt = Date.now();
      expect(await two.terminate()).toBe(0);
      const handover = await waitReopened(c, handed, before, termAt, 60_000);

      await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
      const termHook = webhookFigures(receiver, termAt, Date.now());
      await traffic.stop();
      watching = false;
      await watcher;

      // Every instance open again, by the API of every running node, and in the sandbox.
      for (const node of [one, three]) {
        for (const instance of instances) {
          const status = await node.request<{ state: string }>('GET', '/instance/status', {
            apikey: instance.token,
          });
          expect(status.body.state, `${instance.name} via ${node.nodeId}`).toBe('open');
        }
      }
      const devices = await devicesOf(c, instances);
      expect(instances.filter((i) => !devices.get(i.id)?.online).map((i) => i.name)).toEqual([]);

      // Every inbound message reached the webhook; a message delivered twice carries one event id.
      const inbound = traffic.inbound;
      const idsOf = (text: string): Set<string> => {
        const ids = new Set<string>();
        for (const body of receiver!.acceptedBodies<unknown>('/hook')) {
          for (const item of Array.isArray(body) ? body : [body]) {
            if (JSON.stringify(item).includes(text)) ids.add(String((item as { id?: unknown }).id));
          }
        }
        return ids;
      };
      const summary = {
        instances: INSTANCES,
        failoverMs: {
          instances: killed.length,
          p50: percentile([...failover.values()], 50),
          max: Math.max(...failover.values()),
        },
        handoverMs: {
          instances: handed.length,
          p50: percentile([...handover.values()], 50),
          max: Math.max(...handover.values()),
        },
        inbound: inbound.length,
        webhook: {
          sigkill: { ofTheSender: killedTheSender, ...killHook },
          sigterm: { ofTheSender: terminatedTheSender, ...termHook },
        },
        twoConnectionsForOneDevice: violations,
        serverErrors: traffic.serverErrors.length,
        statuses: Object.fromEntries(traffic.statuses),
        networkErrors: traffic.networkErrors(),
      };
      console.log(`three-node test: ${JSON.stringify(summary)}`);

      let deliveredUnderSeveralIds: string[] = [];
      // The one loss the system allows: a message written to a device's socket just before its node was
      // SIGKILLed. Baileys sends WhatsApp the delivery receipt before it hands the message to zapwire, so a
      // kill in between loses it as it would with WhatsApp (which does not send a received message again),
      // and the sandbox drops a message once written (packages/sandbox/README.md). Only messages to the killed
      // node's instances, sent in the 2 s before the kill and never recorded in the log, count as that.
      const inKillWindow = (m: Inbound): boolean =>
        killed.some((i) => i.id === m.instance.id) && m.sentAt >= killAt - 2_000 && m.sentAt <= killAt;
      let lostAtTheKill: string[] = [];
      try {
        await receiver.waitUntil(
          () => inbound.every((m) => idsOf(m.text).size > 0 || inKillWindow(m)),
          90_000,
          `${inbound.length} inbound messages at the webhook`,
        );
        deliveredUnderSeveralIds = inbound.filter((m) => idsOf(m.text).size > 1).map((m) => m.text);
        const missing = inbound.filter((m) => idsOf(m.text).size === 0);
        const logged = await textsInLog(
          c,
          missing.map((m) => m.text),
        );
        lostAtTheKill = missing.map((m) => m.text);
        // Anything missing that the log has was lost by the webhook, not at the device: a failure.
        expect(missing.filter((m) => logged.has(m.text)).map((m) => m.text)).toEqual([]);
      } catch (error) {
        // Where the missing ones stopped: never recorded in the log, or recorded and not delivered.
        const missing = inbound.filter((m) => idsOf(m.text).size === 0);
        const logged = await textsInLog(
          c,
          missing.map((m) => m.text),
        );
        throw new Error(
          `${String(error)}; missing ${missing.length}: ${missing
            .map(
              (m) =>
                `${m.text} (${logged.has(m.text) ? 'in the log, not delivered' : 'not in the log'}${inKillWindow(m) ? ', sent in the second before the kill' : ''})`,
            )
            .join(', ')}`,
        );
      }
      if (lostAtTheKill.length > 0)
        console.log(`three-node test: lost at the SIGKILL: ${lostAtTheKill.join(', ')}`);
      expect(lostAtTheKill.length).toBeLessThanOrEqual(2);

      // The webhook resumes within the instances' failover (its lease follows CLUSTER_LEASE_MS), and a
      // clean hand-over of the node sending it repeats nothing.
      if (killedTheSender && killed.length > 0)
        expect(killHook.gapMs).toBeLessThanOrEqual(summary.failoverMs.max + 5_000);
      if (terminatedTheSender) expect(termHook.repeats).toBe(0);
      expect(violations).toEqual([]);
      expect(traffic.serverErrors).toEqual([]);
      expect(deliveredUnderSeveralIds).toEqual([]);
      expect(killed.length + handed.length).toBeGreaterThan(0);
      if (killed.length > 0) expect(summary.failoverMs.max).toBeLessThanOrEqual(30_000);
      if (handed.length > 0) expect(summary.handoverMs.max).toBeLessThanOrEqual(5_000);
      expect(traffic.statuses.get(200) ?? 0).toBeGreaterThan(0);
    } catch (error) {
      failed = true;
      throw error;
    }
  }, 600_000);
});
