/**
 * Forwarding with the real app: two zapwire nodes in cluster mode on one PostgreSQL (HTTP on 127.0.0.1,
 * the fake WhatsApp connector). Commands sent to the node that does not own an instance run on the one
 * that does (its connector opens the socket), reads are answered where they arrive, and every write
 * route of the app is classified (or the nodes would not start).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { startZapwire, type Zapwire } from '../../../src/main.ts';
import { FakeWhatsAppConnector } from '../../../src/whatsapp/fake.ts';
import { SERVED_BY_HEADER } from '../../../src/cluster/forwarding.ts';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';
import { callNode, type NodeAnswer } from '../../support/cluster.ts';
import { rawExchange } from '../../support/slow-client.ts';

const ADMIN = 'test-admin-key-0123456789abcdef';

interface Node {
  readonly id: string;
  readonly zapwire: Zapwire;
  readonly fake: FakeWhatsAppConnector;
  readonly url: string;
  readonly dataDir: string;
}

let database: TestDatabase;
const nodes: Node[] = [];

async function startNode(id: string): Promise<Node> {
  const fake = new FakeWhatsAppConnector();
  const dataDir = mkdtempSync(join(tmpdir(), `zw-fwd-${id}-`));
  // A fixed port per node: the advertised address must be known before the node listens.
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN,
    DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    TOKEN_PEPPER: 'shared-token-pepper-0123456789',
    SESSION_ENCRYPTION_KEY: '11'.repeat(32),
    CLUSTER_ENABLED: 'true',
    CLUSTER_SECRET: 'cluster-secret-for-tests-0123456789abcdef',
    CLUSTER_NODE_ID: id,
    CLUSTER_ADVERTISE_URL: `http://127.0.0.1:${port}`,
    CLUSTER_LEASE_MS: '3000',
    CLUSTER_HEARTBEAT_MS: '500',
    PORT: String(port),
    LOG_LEVEL: 'silent',
    RECONNECT_RATE_LIMIT_MS: '0',
  });
  const zapwire = await startZapwire({ config, logger: pino({ level: 'silent' }), connector: fake });
  const node = { id, zapwire, fake, url: `http://127.0.0.1:${port}`, dataDir };
  nodes.push(node);
  return node;
}

function call(
  node: Node,
  method: string,
  path: string,
  options: { apikey?: string; body?: unknown } = {},
): Promise<NodeAnswer<Record<string, unknown>>> {
  return callNode(node.url, method, path, { apikey: ADMIN, ...options });
}

beforeAll(async () => {
  database = await createTestDatabase();
  await startNode('node-a');
  await startNode('node-b');
}, 90_000);

afterAll(async () => {
  for (const node of nodes) {
    await node.zapwire.stop().catch(() => undefined);
    rmSync(node.dataDir, { recursive: true, force: true });
  }
  await database?.drop();
});

/** Creates instances through node-a until one is owned by node-b (new instances go to the least loaded). */
async function instanceOwnedBy(
  owner: Node,
  other: Node,
): Promise<{ id: string; name: string; token: string }> {
  for (let i = 0; i < 10; i++) {
    const name = `inst-${owner.id}-${i}-${Date.now()}`;
    const token = `token-${name}`;
    const created = await call(other, 'POST', '/instance/create', { body: { name, token } });
    expect(created.status).toBe(201);
    const id = created.body['id'] as string;
    const current = await owner.zapwire.cluster.ownerOf(id);
    if (current?.nodeId === owner.id) return { id, name, token };
  }
  throw new Error(`no instance was placed on ${owner.id}`);
}

describe('forwarding between real nodes', () => {
  it('runs connect, pairing and send on the owner whichever node gets them; reads stay local', async () => {
    const [a, b] = nodes as [Node, Node];
    const instance = await instanceOwnedBy(b, a);

    const connected = await call(a, 'POST', '/instance/connect', { apikey: instance.token, body: {} });
    expect(connected).toMatchObject({ status: 200, servedBy: 'node-b', body: { state: 'connecting' } });
    expect(b.fake.connections(instance.id)).toHaveLength(1);
    expect(a.fake.connections(instance.id)).toHaveLength(0);

    const connection = b.fake.connections(instance.id)[0]!;
    connection.issueQr();
    await expect
      .poll(async () => (await call(a, 'GET', '/instance/qr', { apikey: instance.token })).status, {
        timeout: 10_000,
      })
      .toBe(200);
    const qr = await call(a, 'GET', '/instance/qr', { apikey: instance.token });
    expect(qr.servedBy).toBeNull();
    connection.scan();
    await expect
      .poll(
        async () => (await call(a, 'GET', '/instance/status', { apikey: instance.token })).body['state'],
        {
          timeout: 10_000,
        },
      )
      .toBe('open');

    const sent = await call(a, 'POST', '/send/text', {
      apikey: instance.token,
      body: { number: '5511999990000', text: 'through node-a' },
    });
    expect(sent).toMatchObject({ status: 200, servedBy: 'node-b' });
    expect(b.fake.sent.map((s) => s.text)).toContain('through node-a');
    expect(a.fake.sent).toEqual([]);

    const status = await call(a, 'GET', `/instance/status?instanceName=${instance.name}`);
    expect(status).toMatchObject({ status: 200, servedBy: null, body: { state: 'open' } });
  });

  it('runs disconnect, reconnect and delete on the owner', async () => {
    const [a, b] = nodes as [Node, Node];
    const instance = await instanceOwnedBy(a, b);
    expect((await call(b, 'POST', '/instance/connect', { apikey: instance.token, body: {} })).servedBy).toBe(
      'node-a',
    );
    const disconnected = await call(b, 'POST', '/instance/disconnect', { apikey: instance.token, body: {} });
    expect(disconnected).toMatchObject({ status: 200, servedBy: 'node-a', body: { state: 'disconnected' } });
    const deleted = await call(b, 'DELETE', `/instance/delete/${instance.id}`);
    expect(deleted).toMatchObject({ status: 200, servedBy: 'node-a', body: { deleted: true } });
    expect((await call(b, 'GET', `/instance/info/${instance.id}`)).status).toBe(404);
    expect(b.fake.connections(instance.id)).toHaveLength(0);
  });
});

describe('one instance per request: the forwarding decision and the handler agree (issue #22, item 11)', () => {
  it('a blank instanceName in the body does not hide the one in the query', async () => {
    const [a, b] = nodes as [Node, Node];
    const mine = await instanceOwnedBy(b, a);
    const theirs = await instanceOwnedBy(b, a);
    // A tenant naming another instance in the query is refused, whichever node it asks and whatever
    // blank value the body carries: before, node-a ran the command itself for the tenant's own instance.
    const tenant = await call(a, 'POST', `/instance/disconnect?instanceName=${theirs.name}`, {
      apikey: mine.token,
      body: { instanceName: ' ' },
    });
    expect(tenant.status).toBe(403);
    // The admin names it in the query: the owner runs it.
    const admin = await call(a, 'POST', `/instance/disconnect?instanceName=${mine.name}`, {
      body: { instanceName: ' ' },
    });
    expect(admin).toMatchObject({ status: 200, servedBy: 'node-b', body: { id: mine.id } });
    // Two different names are a 400 on every node, never a guess.
    const twice = await call(a, 'POST', `/instance/disconnect?instanceName=${theirs.name}`, {
      body: { instanceName: mine.name },
    });
    expect(twice.status).toBe(400);
    expect(JSON.stringify(twice.body)).toMatch(/instanceName.*once/);
  });

  it('an absolute-form request target is forwarded to the owner like any other', async () => {
    const [a, b] = nodes as [Node, Node];
    const instance = await instanceOwnedBy(b, a);
    // fetch cannot send an absolute-form target: written by hand.
    const port = Number(new URL(a.url).port);
    const answer = await rawExchange(
      port,
      `POST http://zapwire.example/instance/connect HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\napikey: ${instance.token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
    );
    expect(answer).toMatchObject({ status: 200, headers: { [SERVED_BY_HEADER]: 'node-b' } });
    expect(JSON.parse(answer.body)).toMatchObject({ id: instance.id, state: 'connecting' });
  });
});
