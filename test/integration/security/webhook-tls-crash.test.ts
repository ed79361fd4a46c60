/**
 * Security review, item 1: a tenant whose webhook is an https receiver with a certificate for another
 * name could end the whole gateway (an AssertionError thrown by undici on the pipelined connection's
 * second failed connect), and again after every restart while the delivery waited for its retry. Now
 * the delivery fails with the TLS reason, is retried, and the app (and every other tenant) goes on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TLS_FAILURES, TlsReceiver, makeTestPki, type TestPki } from '../../support/tls-receiver.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let pki: TestPki;
let receiver: TlsReceiver;
let t: TestApp;
const uncaught: unknown[] = [];
const record = (error: unknown): void => {
  uncaught.push(error);
};

beforeAll(async () => {
  process.on('uncaughtException', record);
  process.on('unhandledRejection', record);
  pki = makeTestPki();
  receiver = await TlsReceiver.start(pki);
  t = await startTestApp({
    env: {
      WEBHOOK_CA_FILE: pki.caFile,
      WEBHOOK_PIPELINE: '8',
      WEBHOOK_BACKOFF_BASE_MS: '50',
      WEBHOOK_PROBE_MAX_MS: '200',
    },
  });
});
afterAll(async () => {
  await t?.stop();
  await receiver?.close();
  pki?.remove();
  process.off('uncaughtException', record);
  process.off('unhandledRejection', record);
});

async function openInstance(name: string): Promise<{ id: string; token: string }> {
  const token = `${name}-token-0123456789`;
  const created = await t.request('POST', '/instance/create', { body: { name, token } });
  expect(created.status).toBe(201);
  const id = created.body['id'] as string;
  const configured = await t.request('PUT', `/instance/${id}/events`, {
    apikey: token,
    body: { webhookUrl: receiver.url('localhost'), subscribe: ['MESSAGE', 'CONNECTION_UPDATE'] },
  });
  expect(configured.status).toBe(200);
  await t.request('POST', '/instance/connect', { apikey: token });
  const connection = await eventually(() => t.fake.connection(id));
  connection.issueQr();
  connection.scan();
  await eventually(
    async () => (await t.request('GET', '/instance/status', { apikey: token })).body['state'] === 'open',
  );
  return { id, token };
}

function message(id: string): { type: 'MessageReceived'; data: Record<string, unknown> } {
  return {
    type: 'MessageReceived',
    data: {
      at: new Date().toISOString(),
      messageId: id,
      chatJid: '5511999999999@s.whatsapp.net',
      senderJid: '5511999999999@s.whatsapp.net',
      fromMe: false,
      pushName: 'Cliente',
      messageType: 'conversation',
      text: 'olá',
      timestamp: new Date().toISOString(),
      isGroup: false,
    },
  };
}

describe('a tenant webhook on a failing TLS receiver', () => {
  it('fails its deliveries with the reason and never ends the process, before and after a restart', async () => {
    receiver.mode('wrong-name');
    const { id, token } = await openInstance('tlscrash');
    for (let i = 0; i < 5; i += 1) t.fake.connection(id)!.deliver(message(`TLS-${i}`) as never);
    // Enough probes that the pipelined connection fails to connect many times over.
    type Status = { queues: { state: string; lastError: string | null; behind: number }[] };
    // Generous: on a loaded machine (the whole suite on 2 cores) the five messages reach the sink's reader
    // late, and each failed handshake takes its time.
    let last: unknown;
    await eventually(async () => {
      const status = await t.request<Status>('GET', `/instance/${id}/webhook`, { apikey: token });
      last = status.body;
      return status.body.queues[0]?.state === 'paused' && (status.body.queues[0]?.behind ?? 0) >= 5;
    }, 45_000).catch(async (error: unknown) => {
      // What the log holds and what readers may see of it: tells a stalled reader from events never stored.
      const { rows: log } = await t.zapwire.db.query<Record<string, string>>(
        `SELECT e.event_type, e.transaction_id::text AS tx,
                (e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()))::text AS visible,
                pg_snapshot_xmin(pg_current_snapshot())::text AS xmin
           FROM es_events e WHERE e.stream_id IN ($1, $2) ORDER BY e.global_position`,
        [`instance-${id}`, `wa-${id}`],
      );
      const { rows: checkpoints } = await t.zapwire.db.query<Record<string, string>>(
        'SELECT subscription_id, checkpoint FROM es_subscriptions ORDER BY subscription_id',
      );
      throw new Error(
        `${String(error)}; the queue said ${JSON.stringify(last)}; the log: ${JSON.stringify(log)}; checkpoints: ${JSON.stringify(checkpoints)}`,
      );
    });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const admin = await t.request<Status>('GET', `/instance/${id}/webhook`);
    expect(admin.body.queues[0]!.lastError).toMatch(/altnames/);
    // The tenant learns the kind of failure, not the certificate's names.
    const tenant = await t.request<Status>('GET', `/instance/${id}/webhook`, { apikey: token });
    expect(tenant.body.queues[0]!.lastError).toBe('TLS handshake failed (certificate not accepted)');
    expect(uncaught).toEqual([]);
    expect((await t.request('GET', '/health')).status).toBe(200);

    // The parked deliveries are retried right after the restart: that used to end the process again.
    t = await t.restart();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(uncaught).toEqual([]);
    expect((await t.request('GET', '/health')).status).toBe(200);

    // Every other failure class on the same tenant's receiver, and then a healed receiver gets it all.
    for (const failure of TLS_FAILURES) {
      receiver.mode(failure);
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(uncaught).toEqual([]);
    }
    receiver.mode('ok');
    await eventually(
      () =>
        new Set(
          receiver.bodies
            .filter((b) => b.includes('"event":"MESSAGE"'))
            .map((b) => (JSON.parse(b) as { id: string }).id),
        ).size === 5,
      30_000,
    );
    expect(uncaught).toEqual([]);
  }, 150_000);
});
