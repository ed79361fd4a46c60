/**
 * Issue 27 with real processes: `node dist/src/main.js` on PostgreSQL, real Baileys against the sandbox
 * process, a customer's phone that receives what the instances send. The server is SIGKILLed between a
 * request and WhatsApp's ack, and in the middle of a burst; an idempotent request is repeated after a
 * restart; pacing is observed at the customer's phone; the sandbox restricts an instance's number; a
 * scheduled send crosses a restart. Each instance has its own phone, so one scenario's pacing or pause does
 * not touch another's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildOnce,
  pairInstances,
  startCluster,
  type PairedInstance,
  type TestCluster,
} from '../../support/cluster.ts';
import {
  CUSTOMER,
  customerInbox,
  customerRepeats,
  reopened,
  send,
  sleep,
  streamEvents,
  textCounts,
  until,
  type SendAnswer,
} from './harness.ts';

const RESTRICTION_BACKOFF_MS = 2_500;

let cluster: TestCluster | undefined;
let instances: PairedInstance[] = [];
let failed = false;

beforeAll(async () => {
  buildOnce();
  cluster = await startCluster({
    nodes: 1,
    env: {
      CLUSTER_LEASE_MS: '3000',
      CLUSTER_HEARTBEAT_MS: '1000',
      SEND_RESTRICTION_BACKOFF_MS: String(RESTRICTION_BACKOFF_MS),
      RATE_LIMIT_SEND_PER_MINUTE: '0',
    },
  });
  await cluster.sandbox.createAccount(CUSTOMER, 'Customer');
  instances = await pairInstances(cluster, 6, { prefix: 'ob' });
}, 300_000);

afterAll(async () => {
  if (failed && cluster) console.error(`outbox test logs kept in ${cluster.logDir}`);
  await cluster?.close({ keepLogs: failed });
});

function node() {
  return cluster!.nodes[0]!;
}

async function restart(kind: 'kill' | 'term'): Promise<void> {
  if (kind === 'kill') await node().kill();
  else await node().terminate();
  await node().start();
}

function check<T>(fn: () => Promise<T>): () => Promise<T> {
  return async () => {
    try {
      return await fn();
    } catch (error) {
      failed = true;
      throw error;
    }
  };
}

describe('a crash between the request and WhatsApp’s ack', () => {
  it(
    'sends the message again with the same id after the restart, and the customer sees it once',
    check(async () => {
      const c = cluster!;
      const instance = instances[0]!;
      // The sandbox delivers at once and holds the server's ack: the window in which a crash leaves the
      // send done at WhatsApp and not known as done here.
      await c.sandbox.control('POST', `/accounts/${instance.phone}/ack-delay`, { ms: 4_000 });
      const pending = send(node(), instance, { text: 'crash-window-1' }).catch(() => undefined);
      const delivered = await until('the customer has the message', 20_000, async () =>
        (await customerInbox(c)).find((m) => m.text === 'crash-window-1'),
      );
      await node().kill();
      await pending;
      await c.sandbox.control('POST', `/accounts/${instance.phone}/ack-delay`, { ms: 0 });
      await node().start();
      await reopened(c, instance);
      // Sent again by the new process, with the id recorded before the first try: the phone drops it.
      const repeat = await until('the repeat reached the phone', 30_000, async () =>
        (await customerRepeats(c)).find((r) => r.id === delivered.id),
      );
      expect(repeat.repeats).toBeGreaterThanOrEqual(1);
      expect((await textCounts(c, 'crash-window-')).get('crash-window-1')).toBe(1);
      const outbox = await until('SendSent recorded', 20_000, async () => {
        const events = await streamEvents(c, `outbox-${instance.id}`);
        return events.some((e) => e.type === 'SendSent') ? events : undefined;
      });
      const requested = outbox.filter((e) => e.type === 'SendRequested');
      expect(requested).toHaveLength(1);
      expect(requested[0]!.data['messageId']).toBe(delivered.id);
      expect(outbox.filter((e) => e.type === 'SendSent').map((e) => e.data['messageId'])).toEqual([
        delivered.id,
      ]);
    }),
    120_000,
  );

  it(
    'a burst SIGKILLed in the middle, every send without an answer retried with its Idempotency-Key: none lost, none twice',
    check(async () => {
      const c = cluster!;
      const instance = instances[1]!;
      // The restart of the test before may still be restoring this instance (a send answers 503 then).
      await until('the instance sends', 60_000, async () => {
        const probe = await send(
          node(),
          instance,
          { text: 'burst-ready' },
          { 'Idempotency-Key': 'burst-ready' },
        );
        return probe.status === 200 ? true : undefined;
      });
      const total = 40;
      const texts = Array.from({ length: total }, (_, i) => `burst-${String(i).padStart(3, '0')}`);
      const answered = new Map<string, SendAnswer>();
      let next = 0;
      let killed = false;
      const worker = async (): Promise<void> => {
        while (next < total) {
          const text = texts[next++]!;
          try {
            const answer = await send(node(), instance, { text }, { 'Idempotency-Key': `key-${text}` });
            if (answer.status === 200 || answer.status === 202) answered.set(text, answer.body);
          } catch {
            // the connection died with the process: retried below
          }
          if (!killed && answered.size >= total / 3) {
            killed = true;
            await node().kill();
          }
        }
      };
      await Promise.all(Array.from({ length: 6 }, worker));
      expect(killed).toBe(true);
      await node().start();
      await reopened(c, instance);
      for (const text of texts) {
        if (answered.has(text)) continue;
        const answer = await until(`a retry of ${text} answered`, 60_000, async () => {
          const retried = await send(node(), instance, { text }, { 'Idempotency-Key': `key-${text}` });
          return retried.status === 200 || retried.status === 202 ? retried : undefined;
        });
        answered.set(text, answer.body);
      }
      const counts = await until('every text at the customer', 60_000, async () => {
        const found = await textCounts(c, 'burst-0');
        return found.size === total ? found : undefined;
      });
      expect([...counts.values()].filter((n) => n !== 1)).toEqual([]);
      // A retry of a send the first process recorded answers with that send (same WhatsApp id).
      const again = await send(
        node(),
        instance,
        { text: texts[0]! },
        { 'Idempotency-Key': `key-${texts[0]}` },
      );
      expect(again.status).toBe(200);
      expect(again.body.sendId).toBe(answered.get(texts[0]!)!.sendId);
    }),
    240_000,
  );
});

describe('idempotent requests', () => {
  it(
    'a request repeated with its Idempotency-Key after a restart answers with the first send; another body is a 422',
    check(async () => {
      const c = cluster!;
      const instance = instances[2]!;
      const first = await send(node(), instance, { text: 'idem-1' }, { 'Idempotency-Key': 'order-42' });
      expect(first.status).toBe(200);
      expect(first.body.id).toMatch(/^3EB0[0-9A-F]{18}$/);
      await restart('term');
      await reopened(c, instance);
      const repeat = await until('the repeat answered', 30_000, async () => {
        const answer = await send(node(), instance, { text: 'idem-1' }, { 'Idempotency-Key': 'order-42' });
        return answer.status === 503 ? undefined : answer;
      });
      expect(repeat.status).toBe(200);
      expect(repeat.body).toMatchObject({ id: first.body.id, sendId: first.body.sendId });
      const other = await send(node(), instance, { text: 'idem-2' }, { 'Idempotency-Key': 'order-42' });
      expect(other.status).toBe(422);
      expect(other.body.error?.code).toBe('ZW_ERR_IDEMPOTENCY_KEY_REUSED');
      expect(other.body.error?.message).toMatch(/different request/);
      await sleep(1_000);
      expect((await textCounts(c, 'idem-')).get('idem-1')).toBe(1);
      expect((await textCounts(c, 'idem-')).has('idem-2')).toBe(false);
    }),
    120_000,
  );
});

describe('pacing', () => {
  it(
    'spaces the sends at the rate set live, in order, with a typing indicator before each; the queue is visible',
    check(async () => {
      const c = cluster!;
      const instance = instances[3]!;
      // The first message to a contact sets up the Signal session (prekeys): slower than the rest, so it
      // goes before pacing is measured.
      expect((await send(node(), instance, { text: 'before pacing' })).status).toBe(200);
      const settings = await node().request('PUT', `/instance/${instance.id}/send-settings`, {
        apikey: instance.token,
        body: { messagesPerMinute: 100, typingMsPerChar: 20, typingMaxMs: 300 },
      });
      expect(settings.status).toBe(200);
      expect(settings.body).toMatchObject({
        messagesPerMinute: 100,
        typingMsPerChar: 20,
        minGapPerRecipientMs: 0,
      });
      const texts = Array.from({ length: 5 }, (_, i) => `paced-${i}`);
      for (const text of texts) {
        const answer = await send(node(), instance, { text }, { Prefer: 'respond-async' });
        expect(answer.status).toBe(202);
      }
      const queue = await node().request<{ queued: number; sending: number }>(
        'GET',
        `/instance/${instance.id}/outbox`,
        {
          apikey: instance.token,
        },
      );
      expect(queue.status).toBe(200);
      expect(queue.body.queued + queue.body.sending).toBeGreaterThanOrEqual(3);
      const arrived = await until('every paced text', 30_000, async () => {
        const inbox = (await customerInbox(c)).filter((m) => m.text?.startsWith('paced-'));
        return inbox.length === texts.length ? inbox : undefined;
      });
      expect(arrived.map((m) => m.text)).toEqual(texts);
      // 100 a minute: a send starts every 600 ms, so four gaps take 2.4 s; each arrival may lag its start
      // by a little more or less on a loaded machine.
      const span = arrived.at(-1)!.receivedAt - arrived[0]!.receivedAt;
      expect(span).toBeGreaterThanOrEqual(2_400 - 300);
      const composing = (
        await c.sandbox.control<Array<{ from: string; state: string; at: number }>>(
          'GET',
          `/accounts/${CUSTOMER}/chatstates`,
        )
      ).filter((s) => s.state === 'composing' && s.from.startsWith(instance.phone));
      expect(composing.length).toBeGreaterThanOrEqual(texts.length);
      await node().request('PUT', `/instance/${instance.id}/send-settings`, {
        apikey: instance.token,
        body: { messagesPerMinute: 0, typingMsPerChar: 0 },
      });
    }),
    120_000,
  );
});

describe('sends to one recipient', () => {
  it(
    'go one after another as soon as the one before is written, not acknowledged, and arrive in order',
    check(async () => {
      const c = cluster!;
      const instance = instances[5]!;
      expect((await send(node(), instance, { text: 'before the burst' })).status).toBe(200);
      // WhatsApp answers each send 1.5 s late: sends that waited for each other's answer would arrive
      // 1.5 s apart.
      const ACK_DELAY_MS = 1_500;
      await c.sandbox.control('POST', `/accounts/${instance.phone}/ack-delay`, { ms: ACK_DELAY_MS });
      try {
        const texts = Array.from({ length: 6 }, (_, i) => `one-recipient-${i}`);
        const sendIds: string[] = [];
        for (const text of texts) {
          const answer = await send(node(), instance, { text }, { Prefer: 'respond-async' });
          expect(answer.status).toBe(202);
          sendIds.push(answer.body.sendId!);
        }
        const arrived = await until('every text of the run', 30_000, async () => {
          const inbox = (await customerInbox(c)).filter((m) => m.text?.startsWith('one-recipient-'));
          return inbox.length === texts.length ? inbox : undefined;
        });
        expect(arrived.map((m) => m.text)).toEqual(texts);
        expect(arrived.at(-1)!.receivedAt - arrived[0]!.receivedAt).toBeLessThan(ACK_DELAY_MS);
        for (const sendId of sendIds) {
          const state = await until(`send ${sendId} acknowledged`, 20_000, async () => {
            const answer = await node().request<{ state: string }>(
              'GET',
              `/instance/${instance.id}/sends/${sendId}`,
              { apikey: instance.token },
            );
            return answer.body.state === 'sent' ? answer.body : undefined;
          });
          expect(state.state).toBe('sent');
        }
      } finally {
        await c.sandbox.control('POST', `/accounts/${instance.phone}/ack-delay`, { ms: 0 });
      }
    }),
    120_000,
  );
});

describe('a restriction from WhatsApp', () => {
  it(
    'fails the refused send, records SendingRestricted, holds the next send for the backoff, then SendingResumed and it goes',
    check(async () => {
      const c = cluster!;
      const instance = instances[4]!;
      await c.sandbox.control('POST', `/accounts/${instance.phone}/sending-restriction`, {
        code: '463',
        count: 1,
      });
      const refused = await send(node(), instance, { text: 'restricted-1' });
      expect(refused.status).toBe(502);
      expect(refused.body.error?.code).toBe('ZW_ERR_SEND_FAILED');
      expect(refused.body.error?.details).toMatchObject({ code: '463' });
      const restrictedAt = Date.now();
      const outbox = await node().request<{ paused: { code: string } | null }>(
        'GET',
        `/instance/${instance.id}/outbox`,
        {
          apikey: instance.token,
        },
      );
      expect(outbox.body.paused).toMatchObject({ code: '463' });
      const held = await send(node(), instance, { text: 'after-pause' });
      expect(held.status).toBe(202);
      expect(held.body.waitingFor).toMatch(/paused/);
      const arrived = await until('the held send at the customer', 30_000, async () =>
        (await customerInbox(c)).find((m) => m.text === 'after-pause'),
      );
      expect(arrived.receivedAt - restrictedAt).toBeGreaterThanOrEqual(RESTRICTION_BACKOFF_MS - 500);
      const verdicts = await until('SendingResumed recorded', 20_000, async () => {
        const events = (await streamEvents(c, `wa-${instance.id}`)).filter((e) =>
          e.type.startsWith('Sending'),
        );
        return events.some((e) => e.type === 'SendingResumed') ? events : undefined;
      });
      expect(verdicts.map((e) => e.type)).toEqual(['SendingRestricted', 'SendingResumed']);
      expect(verdicts[0]!.data).toEqual({
        code: '463',
        reason: expect.stringMatching(/463/),
        retryAfterMs: RESTRICTION_BACKOFF_MS,
      });
      expect(verdicts[1]!.data).toEqual({});
      expect(verdicts[1]!.createdAt.getTime() - verdicts[0]!.createdAt.getTime()).toBeGreaterThanOrEqual(
        RESTRICTION_BACKOFF_MS - 100,
      );
      expect((await customerInbox(c)).some((m) => m.text === 'restricted-1')).toBe(false);
      const state = await node().request<{ state: string; failure: { code: string } }>(
        'GET',
        `/instance/${instance.id}/sends/${refused.body.error!.details!['sendId'] as string}`,
        { apikey: instance.token },
      );
      expect(state.body).toMatchObject({ state: 'failed', failure: { code: '463' } });
    }),
    120_000,
  );
});

describe('scheduled sends', () => {
  it(
    'a send scheduled with sendAt survives a SIGKILL and goes at its time, once; a cancelled one never goes',
    check(async () => {
      const c = cluster!;
      const instance = instances[2]!;
      const sendAt = new Date(Date.now() + 8_000);
      const scheduled = await send(node(), instance, { text: 'scheduled-1', sendAt: sendAt.toISOString() });
      expect(scheduled.status).toBe(202);
      expect(scheduled.body).toMatchObject({ state: 'scheduled', sendAt: sendAt.toISOString() });
      const toCancel = await send(node(), instance, {
        text: 'scheduled-cancel',
        sendAt: sendAt.toISOString(),
      });
      const cancelled = await node().request(
        'DELETE',
        `/instance/${instance.id}/sends/${toCancel.body.sendId}`,
        {
          apikey: instance.token,
        },
      );
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toMatchObject({ state: 'cancelled' });
      await restart('kill');
      const arrived = await until('the scheduled send at the customer', 60_000, async () =>
        (await customerInbox(c)).find((m) => m.text === 'scheduled-1'),
      );
      expect(arrived.receivedAt).toBeGreaterThanOrEqual(sendAt.getTime() - 50);
      await sleep(2_000);
      const counts = await textCounts(c, 'scheduled-');
      expect(counts.get('scheduled-1')).toBe(1);
      expect(counts.has('scheduled-cancel')).toBe(false);
      const state = await node().request('GET', `/instance/${instance.id}/sends/${scheduled.body.sendId}`, {
        apikey: instance.token,
      });
      expect(state.body).toMatchObject({ state: 'sent', messageId: arrived.id });
    }),
    120_000,
  );
});
