/**
 * Forwarding with the real app: two zapwire nodes in cluster mode on one PostgreSQL (HTTP on 127.0.0.1,
 * the fake WhatsApp connector). Commands sent to the node that does not own an instance run on the one
 * that does (its connector opens the socket), reads are answered where they arrive, and every write
 * route of the app is classified (or the nodes would not start). A forwarded request captured on the
 * wire cannot be replayed to the owner after it restarts with the same CLUSTER_NODE_ID.
 */
import { createServer, type Server } from 'node:http';
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
import { callNode, freePort, type NodeAnswer } from '../../support/cluster.ts';
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

async function startNode(
  id: string,
  options: {
    database?: TestDatabase;
    port?: number;
    advertiseUrl?: string;
    fake?: FakeWhatsAppConnector;
  } = {},
): Promise<Node> {
  const fake = options.fake ?? new FakeWhatsAppConnector();
  const dataDir = mkdtempSync(join(tmpdir(), `zw-fwd-${id}-`));
  // A port chosen before the node listens: its advertised address must be known first.
  const port = options.port ?? (await freePort());
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN,
    DATA_DIR: dataDir,
    DATABASE_URL: (options.database ?? database).url,
    TOKEN_PEPPER: 'shared-token-pepper-0123456789',
    SESSION_ENCRYPTION_KEY: '11'.repeat(32),
    CLUSTER_ENABLED: 'true',
    CLUSTER_SECRET: 'cluster-secret-for-tests-0123456789abcdef',
    CLUSTER_NODE_ID: id,
    CLUSTER_ADVERTISE_URL: options.advertiseUrl ?? `http://127.0.0.1:${port}`,
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

/** What an eavesdropper on the nodes' network keeps of one forwarded request. */
interface Captured {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** An HTTP relay in front of a node that keeps a copy of every request it passes on. */
async function recordingRelay(
  target: () => string,
): Promise<{ url: string; seen: Captured[]; server: Server }> {
  const seen: Captured[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers))
        if (typeof value === 'string' && name !== 'host' && name !== 'connection') headers[name] = value;
      const body = Buffer.concat(chunks);
      seen.push({ method: request.method ?? 'GET', url: request.url ?? '/', headers, body });
      void fetch(`${target()}${request.url ?? '/'}`, {
        method: request.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
      }).then(
        async (answer) => {
          response.writeHead(answer.status, Object.fromEntries(answer.headers));
          response.end(Buffer.from(await answer.arrayBuffer()));
        },
        () => {
          response.writeHead(502);
          response.end();
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, seen, server };
}

describe('replaying a forwarded request', () => {
  it('is refused by the owner after it restarts with the same CLUSTER_NODE_ID (issue 22 item 10)', async () => {
    const own = await createTestDatabase();
    const ownerPort = await freePort();
    const relay = await recordingRelay(() => `http://127.0.0.1:${ownerPort}`);
    try {
      // The owner's advertised address is the relay: what the forwarder sends it passes there.
      let owner = await startNode('replay-owner', {
        database: own,
        port: ownerPort,
        advertiseUrl: relay.url,
      });
      const created = await call(owner, 'POST', '/instance/create', {
        body: { name: 'replayed', token: 'replayed-token-0123456789' },
      });
      const id = created.body['id'] as string;
      await call(owner, 'POST', '/instance/connect', { apikey: 'replayed-token-0123456789', body: {} });
      (await waitFor(() => owner.fake.connections(id)[0])).scan();
      await expect
        .poll(
          async () =>
            (await call(owner, 'GET', '/instance/status', { apikey: 'replayed-token-0123456789' })).body[
              'state'
            ],
        )
        .toBe('open');
      const forwarder = await startNode('replay-forwarder', { database: own });
      const sent = await call(forwarder, 'POST', '/send/text', {
        apikey: 'replayed-token-0123456789',
        body: { number: '5511999990000', text: 'sent once' },
      });
      expect(sent).toMatchObject({ status: 200, servedBy: 'replay-owner' });
      const captured = relay.seen.find((r) => r.url === '/send/text');
      expect(captured?.headers['x-zapwire-forward-signature']).toBeDefined();

      // The owner restarts with the same node id, alone (the forwarder is gone), and owns the instance again.
      await forwarder.zapwire.stop();
      await owner.zapwire.stop();
      // The phone side keeps the session, so the instance opens again after the restart.
      const phones = new FakeWhatsAppConnector();
      phones.saveSession(id);
      owner = await startNode('replay-owner', {
        database: own,
        port: ownerPort,
        advertiseUrl: relay.url,
        fake: phones,
      });
      await expect
        .poll(
          async () =>
            (await call(owner, 'GET', '/instance/status', { apikey: 'replayed-token-0123456789' })).body[
              'state'
            ],
          { timeout: 10_000 },
        )
        .toBe('open');
      expect(owner.zapwire.cluster.holds(id)).toBe(true);

      // The captured bytes, sent again straight to the owner, inside the replay window.
      const replay = await fetch(`http://127.0.0.1:${ownerPort}${captured!.url}`, {
        method: captured!.method,
        headers: captured!.headers,
        body: captured!.body,
      });
      const answer = await replay.text();
      expect(replay.status, answer).toBeGreaterThanOrEqual(400);
      expect(owner.fake.sent.map((s) => s.text)).not.toContain('sent once');
    } finally {
      relay.server.close();
      await own.drop().catch(() => undefined);
    }
  }, 90_000);
});

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
