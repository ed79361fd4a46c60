/**
 * The forwarding hook between two real HTTP servers on 127.0.0.1 (auth, error handling and forwarding as
 * the app installs them, routes reduced to saying where they ran), with a cluster view the test sets by
 * hand: commands for an instance the other node owns run there, reads stay local, and every failure is
 * a clear 503 or 401, never a loop.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClusterNode, ClusterView, InstanceOwner } from '../../../src/cluster/port.ts';
import {
  FORWARD_HEADER,
  SERVED_BY_HEADER,
  installForwarding,
  forwardHeaders,
} from '../../../src/cluster/forwarding.ts';
import { installAuth } from '../../../src/http/auth.ts';
import { callNode, type NodeAnswer } from '../../support/cluster.ts';
import { installErrorHandler } from '../../../src/http/errors.ts';

const ADMIN = 'admin-key-0123456789abcdef';
const SECRET = 'cluster-secret-for-tests-0123456789abcdef';
const INSTANCES = [
  { id: 'i-1', name: 'sales', token: 'sales-token' },
  { id: 'i-2', name: 'other', token: 'other-token' },
];

/** Who owns what, as the test says; addresses are filled in once the nodes listen. */
class StaticCluster {
  readonly owners = new Map<string, string>();
  readonly addresses = new Map<string, string>();
  view(selfId: string): ClusterView {
    return {
      selfId,
      incarnation: () => `${selfId}-run`,
      ownerOf: async (instanceId): Promise<InstanceOwner | undefined> => {
        const nodeId = this.owners.get(instanceId);
        if (!nodeId) return undefined;
        return {
          instanceId,
          nodeId,
          address: this.addresses.get(nodeId) ?? 'http://127.0.0.1:1',
          epoch: 1,
          incarnation: `${nodeId}-run`,
          leaseUntil: new Date(Date.now() + 10_000),
          self: nodeId === selfId,
        };
      },
      nodes: async (): Promise<ClusterNode[]> => [],
      // Always asks ownerOf, so the test's table decides.
      holds: () => false,
    };
  }
}

const cluster = new StaticCluster();
const nodes = new Map<string, { app: FastifyInstance; url: string; ran: string[] }>();

async function startNode(nodeId: string, secret: string | undefined): Promise<void> {
  const app = Fastify();
  const ran: string[] = [];
  const toOwner = installForwarding(app, { cluster: cluster.view(nodeId), secret, timeoutMs: 5_000 });
  installAuth(app, {
    authenticate: async (key) => {
      if (key === ADMIN) return { principal: { role: 'admin' } };
      const instance = INSTANCES.find((i) => i.token === key);
      return instance
        ? {
            principal: { role: 'instance', instanceId: instance.id },
            instance: { id: instance.id, name: instance.name },
          }
        : undefined;
    },
    findInstance: async (ref) => {
      const instance = INSTANCES.find((i) => i.id === ref || i.name === ref.toLowerCase());
      return instance ? { id: instance.id, name: instance.name } : undefined;
    },
  });
  app.addHook('preHandler', toOwner);
  installErrorHandler(app);
  app.post<{ Body: { instanceName?: string; text: string } }>(
    '/send/text',
    { config: { access: 'caller', instanceFrom: ['body.instanceName'], runsOn: 'owner' } },
    async (request) => {
      const { id } = request.instance;
      ran.push(`${id}:${request.body.text}`);
      return { ranOn: nodeId, instance: id, principal: request.principal };
    },
  );
  // Like the Evolution GO profile, a hook rewrites the body before validation: the owner must get the
  // body as the client sent it, or it would rewrite it twice.
  app.post<{ Body: { instanceName?: string; phone: string } }>(
    '/instance/pair',
    {
      config: { access: 'caller', instanceFrom: ['body.instanceName'], runsOn: 'owner' },
      preValidation: async (request) => {
        request.body.phone = `${request.body.phone}!`;
      },
    },
    async (request) => {
      const { id } = request.instance;
      ran.push(`${id}:pair:${request.body.phone}`);
      return { ranOn: nodeId, phone: request.body.phone };
    },
  );
  app.get<{ Querystring: { instanceName?: string } }>(
    '/instance/status',
    { config: { access: 'caller', instanceFrom: ['query.instanceName'] } },
    async (request) => ({
      ranOn: nodeId,
      instance: request.instance.id,
    }),
  );
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  cluster.addresses.set(nodeId, url);
  nodes.set(nodeId, { app, url, ran });
}

function call(
  node: string,
  method: 'GET' | 'POST',
  path: string,
  options: { apikey?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<NodeAnswer<Record<string, unknown>>> {
  return callNode(nodes.get(node)!.url, method, path, { apikey: ADMIN, ...options });
}

beforeAll(async () => {
  await startNode('a', SECRET);
  await startNode('b', SECRET);
  await startNode('c', undefined);
  cluster.owners.set('i-1', 'b');
  cluster.owners.set('i-2', 'b');
});

afterAll(async () => {
  for (const node of nodes.values()) await node.app.close();
});

describe('forwarding to the owner node', () => {
  it('runs a command on the owner and relays its answer', async () => {
    const sent = await call('a', 'POST', '/send/text', { body: { instanceName: 'sales', text: 'one' } });
    expect(sent).toMatchObject({
      status: 200,
      servedBy: 'b',
      body: { ranOn: 'b', instance: 'i-1', principal: { role: 'admin' } },
    });
    expect(nodes.get('b')!.ran).toContain('i-1:one');
    expect(nodes.get('a')!.ran).toEqual([]);
  });

  it('runs a command for an instance this node owns here', async () => {
    cluster.owners.set('i-1', 'a');
    try {
      const sent = await call('a', 'POST', '/send/text', { body: { instanceName: 'sales', text: 'local' } });
      expect(sent).toMatchObject({ status: 200, servedBy: null, body: { ranOn: 'a' } });
    } finally {
      cluster.owners.set('i-1', 'b');
    }
  });

  it('forwards the body as the client sent it, not as the route’s hooks rewrote it', async () => {
    const paired = await call('a', 'POST', '/instance/pair', {
      apikey: 'sales-token',
      body: { phone: '5511' },
    });
    expect(paired).toMatchObject({ status: 200, servedBy: 'b', body: { ranOn: 'b', phone: '5511!' } });
    expect(nodes.get('b')!.ran).toContain('i-1:pair:5511!');
  });

  it('forwards an instance token’s request with its principal, not its key', async () => {
    const sent = await call('a', 'POST', '/send/text', { apikey: 'sales-token', body: { text: 'two' } });
    expect(sent).toMatchObject({
      status: 200,
      servedBy: 'b',
      body: { ranOn: 'b', instance: 'i-1', principal: { role: 'instance', instanceId: 'i-1' } },
    });
  });

  it('answers errors as a single node would (a token naming another instance is a 403, a bad key a 401)', async () => {
    const refused = await call('a', 'POST', '/send/text', {
      apikey: 'other-token',
      body: { instanceName: 'sales', text: 'x' },
    });
    expect(refused.status).toBe(403);
    expect((await call('a', 'POST', '/send/text', { apikey: 'wrong', body: { text: 'x' } })).status).toBe(
      401,
    );
    expect(
      (await call('a', 'POST', '/send/text', { body: { instanceName: 'nobody', text: 'x' } })).status,
    ).toBe(404);
    expect([...nodes.values()].flatMap((n) => n.ran)).not.toContain('i-1:x');
  });

  it('serves reads locally', async () => {
    const status = await call('a', 'GET', '/instance/status', { apikey: 'sales-token' });
    expect(status).toMatchObject({ status: 200, servedBy: null, body: { ranOn: 'a' } });
  });

  it('answers 503 with Retry-After when nobody owns the instance', async () => {
    cluster.owners.delete('i-1');
    try {
      const answer = await call('a', 'POST', '/send/text', { apikey: 'sales-token', body: { text: 'x' } });
      expect(answer).toMatchObject({ status: 503, retryAfter: '2' });
      expect(JSON.stringify(answer.body)).toMatch(/no node owns instance i-1/);
    } finally {
      cluster.owners.set('i-1', 'b');
    }
  });

  it('answers 503 when the owner does not answer', async () => {
    const address = cluster.addresses.get('b')!;
    cluster.addresses.set('b', 'http://127.0.0.1:1');
    try {
      const answer = await call('a', 'POST', '/send/text', { apikey: 'sales-token', body: { text: 'x' } });
      expect(answer.status).toBe(503);
      expect(JSON.stringify(answer.body)).toMatch(/\(b\) did not answer/);
    } finally {
      cluster.addresses.set('b', address);
    }
  });

  it('without CLUSTER_SECRET, names the owner in a 503 instead of forwarding', async () => {
    const answer = await call('c', 'POST', '/send/text', { apikey: 'sales-token', body: { text: 'x' } });
    expect(answer.status).toBe(503);
    expect(JSON.stringify(answer.body)).toMatch(
      /owned by node b; this node cannot forward requests without CLUSTER_SECRET/,
    );
  });

  it('refuses forged forwarding headers from a client', async () => {
    const forged = await call('b', 'POST', '/send/text', {
      apikey: 'nothing',
      body: { instanceName: 'sales', text: 'forged' },
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
    expect(nodes.get('b')!.ran).not.toContain('i-1:forged');
  });

  function signedRequest(
    to: string,
    text: string,
    nonce: string,
  ): { headers: Record<string, string>; body: Buffer } {
    const body = Buffer.from(JSON.stringify({ text }));
    const parts = {
      method: 'POST',
      url: '/send/text',
      body,
      timestamp: Date.now(),
      nonce,
      from: 'b',
      to,
      toIncarnation: `${to}-run`,
      principal: 'instance:i-1',
    };
    return {
      body,
      headers: {
        'content-type': 'application/json',
        ...forwardHeaders(SECRET, parts),
      },
    };
  }

  it('never forwards a forwarded request again: a node that does not own the instance answers 503', async () => {
    // Signed as node b would sign it, sent to node a, which does not own the instance.
    const { headers, body } = signedRequest('a', 'loop', 'loop-nonce');
    const response = await fetch(`${nodes.get('a')!.url}/send/text`, { method: 'POST', headers, body });
    expect(response.status).toBe(503);
    expect(response.headers.get(SERVED_BY_HEADER)).toBeNull();
    expect(await response.text()).toMatch(/not owned by node a/);
    expect([...nodes.values()].flatMap((n) => n.ran)).not.toContain('i-1:loop');
  });

  it('accepts a signed request once, on the owner, and refuses its replay', async () => {
    cluster.owners.set('i-1', 'a');
    try {
      const { headers, body } = signedRequest('a', 'once', 'once-nonce');
      const first = await fetch(`${nodes.get('a')!.url}/send/text`, { method: 'POST', headers, body });
      expect(first.status).toBe(200);
      const replay = await fetch(`${nodes.get('a')!.url}/send/text`, { method: 'POST', headers, body });
      expect(replay.status).toBe(401);
      expect(nodes.get('a')!.ran.filter((r) => r === 'i-1:once')).toHaveLength(1);
    } finally {
      cluster.owners.set('i-1', 'b');
    }
  });

  it('refuses to start with a route that writes and says nowhere whether it needs the owner', async () => {
    const app = Fastify();
    installAuth(app, { authenticate: async () => undefined, findInstance: async () => undefined });
    expect(() =>
      app.post('/instance/:id/something-new', { config: { access: 'caller' } }, async () => ({})),
    ).toThrow(/POST \/instance\/:id\/something-new declares no config.runsOn/);
    // A route that runs on the owner must say where its request names the instance.
    expect(() =>
      app.post('/instance/connect', { config: { access: 'caller', runsOn: 'owner' } }, async () => ({})),
    ).toThrow(
      /POST \/instance\/connect runs on the instance's owner node but declares no config.instanceFrom/,
    );
    // Reads run where they arrive unless they say otherwise.
    expect(() =>
      app.get('/instance/:id/something-new', { config: { access: 'caller' } }, async () => ({})),
    ).not.toThrow();
    await app.close();
  });
});
