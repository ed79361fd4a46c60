/**
 * Forwarding between two real nodes (HTTP on 127.0.0.1, one PostgreSQL, the fake WhatsApp connector),
 * with a cluster view the test sets by hand: commands for an instance the other node owns run there,
 * reads stay local, and every failure is a clear 503 or 401, never a loop.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { startZapwire, type Zapwire } from '../../../src/main.ts';
import { FakeWhatsAppConnector } from '../../../src/whatsapp/fake.ts';
import type { ClusterNode, ClusterView, InstanceOwner } from '../../../src/cluster/port.ts';
import {
  FORWARD_HEADER,
  SERVED_BY_HEADER,
  installForwarding,
  signForward,
} from '../../../src/cluster/forwarding.ts';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';

const ADMIN = 'test-admin-key-0123456789abcdef';
const SECRET = 'cluster-secret-for-tests-0123456789abcdef';

/** Who owns what, as the test says; addresses are filled in once the nodes listen. */
class StaticCluster {
  readonly owners = new Map<string, string>();
  readonly addresses = new Map<string, string>();
  view(selfId: string): ClusterView {
    return {
      selfId,
      ownerOf: async (instanceId): Promise<InstanceOwner | undefined> => {
        const nodeId = this.owners.get(instanceId);
        if (!nodeId) return undefined;
        return {
          instanceId,
          nodeId,
          address: this.addresses.get(nodeId) ?? 'http://127.0.0.1:1',
          epoch: 1,
          leaseUntil: new Date(Date.now() + 10_000),
          self: nodeId === selfId,
        };
      },
      nodes: async (): Promise<ClusterNode[]> =>
        [...this.addresses].map(([nodeId, address]) => ({
          nodeId,
          address,
          startedAt: new Date(),
          heartbeatAt: new Date(),
          instances: [...this.owners.values()].filter((n) => n === nodeId).length,
        })),
    };
  }
}

const cluster = new StaticCluster();
let database: TestDatabase;
const nodes: Record<'a' | 'b', { zapwire: Zapwire; fake: FakeWhatsAppConnector; url: string }> = {} as never;

async function startNode(nodeId: 'a' | 'b'): Promise<void> {
  const fake = new FakeWhatsAppConnector();
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN,
    DATA_DIR: mkdtempSync(join(tmpdir(), `zw-fwd-${nodeId}-`)),
    DATABASE_URL: database.url,
    TOKEN_PEPPER: 'shared-token-pepper-0123456789',
    SESSION_ENCRYPTION_KEY: '11'.repeat(32),
    CLUSTER_SECRET: SECRET,
    PORT: '0',
    LOG_LEVEL: 'silent',
    RECONNECT_RATE_LIMIT_MS: '0',
  });
  const zapwire = await startZapwire({
    config,
    logger: pino({ level: 'silent' }),
    connector: fake,
    cluster: cluster.view(nodeId),
  });
  const url = zapwire.url!.replace('localhost', '127.0.0.1');
  cluster.addresses.set(nodeId, url);
  nodes[nodeId] = { zapwire, fake, url };
}

async function call(
  node: 'a' | 'b',
  method: string,
  path: string,
  options: { apikey?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{
  status: number;
  body: Record<string, unknown>;
  servedBy: string | null;
  retryAfter: string | null;
}> {
  const response = await fetch(`${nodes[node].url}${path}`, {
    method,
    headers: {
      apikey: options.apikey ?? ADMIN,
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    servedBy: response.headers.get(SERVED_BY_HEADER),
    retryAfter: response.headers.get('retry-after'),
  };
}

let instanceId: string;
let token: string;

beforeAll(async () => {
  database = await createTestDatabase();
  await startNode('a');
  await startNode('b');
  const created = await call('a', 'POST', '/instance/create', {
    body: { name: 'sales', token: 'sales-token-123' },
  });
  expect(created.status).toBe(201);
  instanceId = created.body['id'] as string;
  token = 'sales-token-123';
  cluster.owners.set(instanceId, 'b');
}, 60_000);

afterAll(async () => {
  await nodes.a?.zapwire.stop().catch(() => undefined);
  await nodes.b?.zapwire.stop().catch(() => undefined);
  await database?.drop();
});

describe('forwarding to the owner node', () => {
  it('runs a command on the owner and relays its answer', async () => {
    const connected = await call('a', 'POST', '/instance/connect', { body: { instanceName: 'sales' } });
    expect(connected).toMatchObject({ status: 200, servedBy: 'b', body: { state: 'connecting' } });
    // The owner's connector opened the socket; the node that took the request did not.
    expect(nodes.b.fake.connections(instanceId)).toHaveLength(1);
    expect(nodes.a.fake.connections(instanceId)).toHaveLength(0);
    const connection = nodes.b.fake.connections(instanceId)[0]!;
    connection.issueQr();
    connection.scan();
    await expect
      .poll(async () => (await call('a', 'GET', '/instance/status?instanceName=sales')).body['state'], {
        timeout: 10_000,
      })
      .toBe('open');
  });

  it('forwards an instance token’s request with its principal, not its key', async () => {
    const sent = await call('a', 'POST', '/send/text', {
      apikey: token,
      body: { number: '5511999990000', text: 'hi' },
    });
    expect(sent).toMatchObject({ status: 200, servedBy: 'b' });
    expect(nodes.b.fake.sent.map((s) => s.text)).toEqual(['hi']);
    expect(nodes.a.fake.sent).toEqual([]);
  });

  it('relays the owner’s errors as they are (a token naming another instance is still a 403)', async () => {
    const other = await call('a', 'POST', '/instance/create', {
      body: { name: 'other', token: 'other-token-123' },
    });
    cluster.owners.set(other.body['id'] as string, 'b');
    const refused = await call('a', 'POST', '/instance/disconnect', {
      apikey: 'other-token-123',
      body: { instanceName: 'sales' },
    });
    expect(refused.status).toBe(403);
    const wrongKey = await call('a', 'POST', '/instance/disconnect', {
      apikey: 'not-a-key-at-all',
      body: {},
    });
    expect(wrongKey.status).toBe(401);
  });

  it('serves reads from the shared read model locally', async () => {
    const status = await call('a', 'GET', '/instance/status', { apikey: token });
    expect(status).toMatchObject({ status: 200, servedBy: null, body: { state: 'open' } });
  });

  it('answers 503 with Retry-After when nobody owns the instance', async () => {
    cluster.owners.delete(instanceId);
    try {
      const answer = await call('a', 'POST', '/instance/reconnect', { apikey: token, body: {} });
      expect(answer.status).toBe(503);
      expect(answer.retryAfter).toBe('2');
      expect(JSON.stringify(answer.body)).toMatch(/no node owns instance/);
    } finally {
      cluster.owners.set(instanceId, 'b');
    }
  });

  it('answers 503 when the owner does not answer', async () => {
    const address = cluster.addresses.get('b')!;
    cluster.addresses.set('b', 'http://127.0.0.1:1');
    try {
      const answer = await call('a', 'POST', '/send/text', {
        apikey: token,
        body: { number: '5511999990000', text: 'x' },
      });
      expect(answer.status).toBe(503);
      expect(JSON.stringify(answer.body)).toMatch(/did not answer/);
    } finally {
      cluster.addresses.set('b', address);
    }
  });

  it('refuses forged forwarding headers from a client', async () => {
    const forged = await call('b', 'POST', '/send/text', {
      apikey: 'nothing',
      body: { number: '5511999990000', text: 'forged' },
      headers: {
        [FORWARD_HEADER.from]: 'a',
        [FORWARD_HEADER.to]: 'b',
        [FORWARD_HEADER.timestamp]: String(Date.now()),
        [FORWARD_HEADER.nonce]: 'n',
        [FORWARD_HEADER.principal]: 'admin',
        [FORWARD_HEADER.signature]: '00'.repeat(32),
      },
    });
    expect(forged.status).toBe(401);
    expect(nodes.b.fake.sent.map((s) => s.text)).not.toContain('forged');
  });

  it('never forwards a forwarded request again: a node that does not own the instance answers 503', async () => {
    // Signed as node b would sign it, sent to node a, which does not own the instance.
    const body = Buffer.from(JSON.stringify({ number: '5511999990000', text: 'loop' }));
    const parts = {
      method: 'POST',
      url: '/send/text',
      body,
      timestamp: Date.now(),
      nonce: 'loop-nonce',
      from: 'b',
      to: 'a',
      principal: `instance:${instanceId}`,
    };
    const response = await fetch(`${nodes.a.url}/send/text`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [FORWARD_HEADER.from]: parts.from,
        [FORWARD_HEADER.to]: parts.to,
        [FORWARD_HEADER.timestamp]: String(parts.timestamp),
        [FORWARD_HEADER.nonce]: parts.nonce,
        [FORWARD_HEADER.principal]: parts.principal,
        [FORWARD_HEADER.signature]: signForward(SECRET, parts),
      },
      body,
    });
    expect(response.status).toBe(503);
    expect(response.headers.get(SERVED_BY_HEADER)).toBeNull();
    expect(await response.text()).toMatch(/not owned by node a/);
    expect([...nodes.a.fake.sent, ...nodes.b.fake.sent].map((s) => s.text)).not.toContain('loop');
  });

  it('forwards delete and the owner removes the instance everywhere', async () => {
    const created = await call('b', 'POST', '/instance/create', { body: { name: 'temp' } });
    cluster.owners.set(created.body['id'] as string, 'a');
    const deleted = await call('b', 'DELETE', `/instance/delete/${created.body['id'] as string}`);
    expect(deleted).toMatchObject({ status: 200, servedBy: 'a', body: { deleted: true } });
    expect((await call('b', 'GET', '/instance/info/temp')).status).toBe(404);
  });

  it('refuses to start with a route that writes and says nowhere whether it needs the owner', async () => {
    // Every route of the real app was classified, or the nodes above would not have started.
    const app = Fastify();
    installForwarding(app, { cluster: cluster.view('x'), secret: SECRET });
    expect(() => app.post('/instance/:id/something-new', async () => ({}))).toThrow(
      /POST \/instance\/:id\/something-new is in neither/,
    );
    await app.close();
  });
});
