/**
 * Issue 27's failover test: three zapwire nodes on one PostgreSQL, real Baileys against the sandbox. Sends
 * are in flight on the node that owns their instances (the sandbox delivers them and holds WhatsApp's ack)
 * when that node is SIGKILLed; another node takes the instances over and sends what was recorded and not
 * finished again, with the same WhatsApp ids; the clients retry every send they had no answer for with its
 * Idempotency-Key, through the surviving nodes. The customer's phone shows every text exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildOnce,
  ownersOf,
  pairInstances,
  startCluster,
  type PairedInstance,
  type TestCluster,
} from '../../support/cluster.ts';
import {
  CUSTOMER,
  customerRepeats,
  reopened,
  send,
  streamEvents,
  textCounts,
  until,
  type SendAnswer,
} from './harness.ts';

let cluster: TestCluster | undefined;
let instances: PairedInstance[] = [];
let failed = false;

beforeAll(async () => {
  buildOnce();
  cluster = await startCluster({
    nodes: 3,
    env: { CLUSTER_LEASE_MS: '3000', CLUSTER_HEARTBEAT_MS: '1000', RATE_LIMIT_SEND_PER_MINUTE: '0' },
  });
  await cluster.sandbox.createAccount(CUSTOMER, 'Customer');
  instances = await pairInstances(cluster, 3, { prefix: 'fo' });
}, 300_000);

afterAll(async () => {
  if (failed && cluster) console.error(`failover test logs kept in ${cluster.logDir}`);
  await cluster?.close({ keepLogs: failed });
});

describe('a node dies with sends in flight', () => {
  it('every send reaches the customer exactly once, through the node that takes its instance over', async () => {
    try {
      const c = cluster!;
      const owners = await ownersOf(c);
      const victimId = owners.get(instances[0]!.id)!;
      const victim = c.nodes.find((n) => n.nodeId === victimId)!;
      const others = c.nodes.filter((n) => n !== victim);
      const onVictim = instances.filter((i) => owners.get(i.id) === victimId);
      for (const instance of onVictim)
        await c.sandbox.control('POST', `/accounts/${instance.phone}/ack-delay`, { ms: 5_000 });

      const sends = onVictim.flatMap((instance) =>
        Array.from({ length: 4 }, (_, k) => ({ instance, text: `failover-${instance.name}-${k}` })),
      );
      const answered = new Map<string, SendAnswer>();
      let turn = 0;
      // Through the other nodes, forwarded to the owner: in flight there when it dies.
      const inFlight = Promise.all(
        sends.map(async ({ instance, text }) => {
          const answer = await send(
            others[turn++ % others.length]!,
            instance,
            { text },
            {
              'Idempotency-Key': `k-${text}`,
            },
          ).catch(() => undefined);
          if (answer && (answer.status === 200 || answer.status === 202)) answered.set(text, answer.body);
        }),
      );
      await until('a send delivered and not acknowledged yet', 30_000, async () =>
        (await textCounts(c, 'failover-')).size > 0 ? true : undefined,
      );
      await victim.kill();
      await inFlight;
      for (const instance of onVictim)
        await c.sandbox.control('POST', `/accounts/${instance.phone}/ack-delay`, { ms: 0 });
      for (const instance of onVictim) await reopened(c, instance, 60_000);

      for (const { instance, text } of sends) {
        if (answered.has(text)) continue;
        const answer = await until(`a retry of ${text} answered`, 60_000, async () => {
          const retried = await send(c.next(), instance, { text }, { 'Idempotency-Key': `k-${text}` });
          return retried.status === 200 || retried.status === 202 ? retried : undefined;
        });
        answered.set(text, answer.body);
      }
      const counts = await until('every text at the customer', 60_000, async () => {
        const found = await textCounts(c, 'failover-');
        return found.size === sends.length ? found : undefined;
      });
      expect([...counts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
      // What the victim had sent without recording it was sent again by the new owner, with its id.
      expect((await customerRepeats(c)).length).toBeGreaterThanOrEqual(1);
      const newOwners = await ownersOf(c);
      for (const instance of onVictim) {
        expect(newOwners.get(instance.id)).not.toBe(victimId);
        const events = await until(`${instance.name}'s sends all finished`, 30_000, async () => {
          const all = await streamEvents(c, `outbox-${instance.id}`);
          const requested = all.filter((e) => e.type === 'SendRequested').length;
          const done = all.filter((e) => e.type === 'SendSent').length;
          return requested === 4 && done === 4 ? all : undefined;
        });
        expect(new Set(events.filter((e) => e.type === 'SendSent').map((e) => e.data['sendId'])).size).toBe(
          4,
        );
      }
    } catch (error) {
      failed = true;
      throw error;
    }
  }, 300_000);
});
