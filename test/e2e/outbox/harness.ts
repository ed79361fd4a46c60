/**
 * Shared by the outbox's end-to-end tests: real zapwire processes (test/support/cluster.ts) with real
 * Baileys against the sandbox process, a customer's phone that receives what the instances send, and
 * reads of the shared database (the log's events) and of the sandbox (what the phone shows).
 */
import pg from 'pg';
import type { ClusterNodeProcess, NodeAnswer, PairedInstance, TestCluster } from '../../support/cluster.ts';

export const CUSTOMER = '5511988880001';
export const CUSTOMER_JID = `${CUSTOMER}@s.whatsapp.net`;

export interface PhoneMessage {
  readonly id: string;
  readonly from: string;
  readonly text?: string;
  readonly receivedAt: number;
}

export interface Repeat {
  readonly id: string;
  readonly from: string;
  readonly repeats: number;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What the customer's phone shows (its inbox: one entry per message, repeats dropped). */
export function customerInbox(cluster: TestCluster): Promise<PhoneMessage[]> {
  return cluster.sandbox.control<PhoneMessage[]>('GET', `/accounts/${CUSTOMER}/messages`);
}

export function customerRepeats(cluster: TestCluster): Promise<Repeat[]> {
  return cluster.sandbox.control<Repeat[]>('GET', `/accounts/${CUSTOMER}/repeats`);
}

/** How many times each text shows on the customer's phone. */
export async function textCounts(cluster: TestCluster, prefix: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const m of await customerInbox(cluster))
    if (m.text?.startsWith(prefix)) counts.set(m.text, (counts.get(m.text) ?? 0) + 1);
  return counts;
}

export async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await sleep(200);
  }
}

export interface SendAnswer {
  readonly id?: string;
  readonly sendId?: string;
  readonly messageId?: string;
  readonly state?: string;
  readonly waitingFor?: string;
  readonly error?: { code: string; message: string; details?: Record<string, unknown> };
}

export function send(
  node: ClusterNodeProcess,
  instance: PairedInstance,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<NodeAnswer<SendAnswer>> {
  return node.request<SendAnswer>('POST', '/send/text', {
    apikey: instance.token,
    body: { number: CUSTOMER, ...body },
    headers,
    timeoutMs: 45_000,
  });
}

/** The instance is open on some node again (after a restart or a failover). */
export function reopened(cluster: TestCluster, instance: PairedInstance, timeoutMs = 60_000): Promise<true> {
  return until(`${instance.name} open`, timeoutMs, async () => {
    const answer = await cluster
      .next()
      .request<{ state?: string }>('GET', '/instance/status', { apikey: instance.token, timeoutMs: 5_000 });
    return answer.body.state === 'open' ? true : undefined;
  });
}

export interface LoggedEvent {
  readonly type: string;
  readonly data: Record<string, unknown>;
  readonly createdAt: Date;
}

/** The events of one stream, from the shared database. */
export async function streamEvents(cluster: TestCluster, stream: string): Promise<LoggedEvent[]> {
  const client = new pg.Client({ connectionString: cluster.database.url });
  await client.connect();
  try {
    const { rows } = await client.query<{
      event_type: string;
      data: Record<string, unknown>;
      created_at: Date;
    }>('SELECT event_type, data, created_at FROM es_events WHERE stream_id = $1 ORDER BY stream_position', [
      stream,
    ]);
    return rows.map((r) => ({ type: r.event_type, data: r.data, createdAt: r.created_at }));
  } finally {
    await client.end();
  }
}
