/**
 * Fencing with real processes: three nodes (test/support/cluster-node.ts) on one PostgreSQL. The owner of
 * an open instance is paused with SIGSTOP past its lease; another node takes the instance over and opens
 * it. On SIGCONT the paused node's writes for that instance are refused by the database (its epoch is
 * stale) and it closes its connection. Then the new owner gets SIGTERM and hands the instance over, and the
 * node that took it gets SIGKILL: the last one opens it once the lease expires.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';

const ADMIN_KEY = 'test-admin-key-0123456789abcdef';
// Short by default to keep the test under a minute; CLUSTER_TEST_LEASE_MS=10000 CLUSTER_TEST_HEARTBEAT_MS=2000
// measures the production defaults.
const LEASE_MS = Number(process.env['CLUSTER_TEST_LEASE_MS'] ?? 3_000);
const HEARTBEAT_MS = Number(process.env['CLUSTER_TEST_HEARTBEAT_MS'] ?? 500);
const NODE_SCRIPT = join(import.meta.dirname, '../../support/cluster-node.ts');

type Line = Record<string, unknown> & { t?: number };

interface NodeProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly url: string;
  readonly lines: Line[];
  nodeId: string;
  exited: Promise<number | null>;
  waitFor(match: (line: Line) => boolean, timeoutMs: number, what: string, from?: number): Promise<Line>;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];
let database: TestDatabase | undefined;
let client: pg.Client | undefined;

afterAll(async () => {
  // Every node runs in its own process group: end the whole tree, also when a test failed half-way.
  for (const child of children) {
    if (child.pid === undefined || child.exitCode !== null) continue;
    try {
      process.kill(-child.pid, 'SIGCONT');
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await client?.end().catch(() => undefined);
  await database?.drop().catch(() => undefined);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function startNode(name: string, databaseUrl: string): Promise<NodeProcess> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), `zapwire-cluster-${name}-`));
  dirs.push(dataDir);
  const child = spawn(process.execPath, ['--import', 'tsx', NODE_SCRIPT], {
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      GLOBAL_API_KEY: ADMIN_KEY,
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      // Nodes of one cluster share these (docs/cluster.md).
      SESSION_ENCRYPTION_KEY: '11'.repeat(32),
      TOKEN_PEPPER: 'cluster-test-pepper-0123456789',
      CLUSTER_ENABLED: 'true',
      CLUSTER_SECRET: 'cluster-secret-for-tests-0123456789abcdef',
      CLUSTER_LEASE_MS: String(LEASE_MS),
      CLUSTER_HEARTBEAT_MS: String(HEARTBEAT_MS),
      LOG_LEVEL: 'warn',
      RECONNECT_BASE_MS: '100',
      RECONNECT_MAX_MS: '1000',
    },
  });
  children.push(child);
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Line);
    } catch {
      lines.push({ text });
    }
    for (const wake of waiters) wake();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const node: NodeProcess = {
    name,
    child,
    url: `http://127.0.0.1:${port}`,
    lines,
    nodeId: '',
    exited,
    async waitFor(match, timeoutMs, what, from = 0) {
      const found = () => lines.slice(from).find(match);
      const hit = found();
      if (hit) return hit;
      return new Promise<Line>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`node ${name}: no ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
        const check = () => {
          const line = found();
          if (!line) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(line);
        };
        waiters.add(check);
      });
    },
  };
  void exited.then((code) => {
    for (const wake of waiters) wake();
    if (code !== 0 && code !== null) lines.push({ exited: code });
  });
  const ready = await node.waitFor((l) => l['node'] === 'ready', 60_000, 'ready line');
  node.nodeId = String(ready['nodeId']);
  return node;
}

async function request(url: string, apikey: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { apikey, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (!response.ok) throw new Error(`${url}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function lease(id: string): Promise<{ node_id: string | null; epoch: number }> {
  const { rows } = await client!.query<{ node_id: string | null; epoch: number }>(
    'SELECT node_id, epoch::int AS epoch FROM zw_instance_leases WHERE instance_id = $1',
    [id],
  );
  return rows[0] ?? { node_id: null, epoch: 0 };
}

/** Call events the node delivered on the instance and that got into its `wa-` stream. */
async function trafficFrom(node: NodeProcess, id: string): Promise<number> {
  const { rows } = await client!.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM es_events WHERE stream_id = $1 AND data->>'callId' LIKE $2`,
    [`wa-${id}`, `${node.nodeId}#%`],
  );
  return rows[0]!.n;
}

/** The first of `candidates` to open the instance from now on. */
async function firstToOpen(
  candidates: readonly NodeProcess[],
  id: string,
  timeoutMs: number,
  what: string,
): Promise<NodeProcess> {
  const marks = candidates.map((n) => n.lines.length);
  return Promise.any(
    candidates.map(async (node, i) => {
      await node.waitFor(isOpened(id), timeoutMs, what, marks[i]);
      return node;
    }),
  );
}

const isOpened = (id: string) => (l: Line) => l['fake'] === 'opened' && l['instanceId'] === id;
const isClosed = (id: string) => (l: Line) => l['fake'] === 'closed' && l['instanceId'] === id;

describe('cluster fencing with real processes', () => {
  it('a node paused past its lease is fenced: its writes are refused and it closes the socket; SIGTERM hands over', async () => {
    database = await createTestDatabase();
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const nodes = await Promise.all(['a', 'b', 'c'].map((name) => startNode(name, database!.url)));

    const created = await request(`${nodes[0]!.url}/instance/create`, ADMIN_KEY, {
      name: 'fenced',
      token: 'fenced-token-0123456789',
    });
    const id = String(created['id']);
    const placed = await lease(id);
    const owner = nodes.find((n) => n.nodeId === placed.node_id)!;
    const others = nodes.filter((n) => n !== owner);
    expect(owner, `placed on ${placed.node_id}`).toBeDefined();
    // Forwarding is not part of this test: ask the owner itself.
    await request(`${owner.url}/instance/connect`, 'fenced-token-0123456789');
    await owner.waitFor(isOpened(id), 10_000, 'open connection');
    await expect.poll(() => trafficFrom(owner, id), { timeout: 10_000 }).toBeGreaterThan(3);
    const epochBefore = (await lease(id)).epoch;

    // Pause the owner past its lease: another node takes the instance over and opens it.
    process.kill(owner.child.pid!, 'SIGSTOP');
    const paused = Date.now();
    const other = await firstToOpen(others, id, 30_000, 'take-over');
    const pauseTakeOverMs = Date.now() - paused;
    const taken = await lease(id);
    expect(taken.node_id).toBe(other.nodeId);
    expect(taken.epoch).toBeGreaterThan(epochBefore);
    const ownerWrites = await trafficFrom(owner, id);

    // Resume it: its pending traffic append carries the stale epoch and is refused; it drops the instance.
    const resumeMark = owner.lines.length;
    process.kill(owner.child.pid!, 'SIGCONT');
    const resumed = Date.now();
    const closed = await owner.waitFor(isClosed(id), 10_000, 'close of the fenced connection', resumeMark);
    const refused = await owner.waitFor(
      (l) => (l['err'] as { type?: string } | undefined)?.type === 'FencedWriteError',
      10_000,
      'refused write',
      resumeMark,
    );
    expect(String((refused['err'] as { message?: string }).message)).toContain(`instance ${id} is leased to`);
    await owner.waitFor(
      (l) => String(l['msg']).startsWith('lost the instance lease'),
      10_000,
      'lease loss',
      resumeMark,
    );
    // A while later: nothing the paused node sent got in, and the instance is still the other node's.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await trafficFrom(owner, id)).toBe(ownerWrites);
    expect((await lease(id)).node_id).toBe(other.nodeId);
    expect(await trafficFrom(other, id)).toBeGreaterThan(0);

    // SIGTERM the new owner: it records the close and releases the lease; another node opens it at once.
    const remaining = nodes.filter((n) => n !== other);
    process.kill(other.child.pid!, 'SIGTERM');
    const terminated = Date.now();
    const heir = await firstToOpen(remaining, id, 5_000, 'hand-over');
    const handOverMs = Date.now() - terminated;
    expect(await other.exited).toBe(0);
    expect((await lease(id)).node_id).toBe(heir.nodeId);

    // SIGKILL that one: its lease expires and the last node opens the instance.
    const last = remaining.filter((n) => n !== heir);
    process.kill(heir.child.pid!, 'SIGKILL');
    const killed = Date.now();
    const survivor = await firstToOpen(last, id, 30_000, 'failover');
    const failoverMs = Date.now() - killed;
    expect((await lease(id)).node_id).toBe(survivor.nodeId);
    // After the pause, the hand-over and the kill, each read model rebuilt from the log equals the live one.
    for (const projection of ['instances', 'instance_logs']) {
      const report = await request(`${survivor.url}/admin/projections/${projection}/rebuild`, ADMIN_KEY);
      expect(report['equal'], `${projection}: ${JSON.stringify(report['tables'])}`).toBe(true);
    }

    console.log(
      `cluster fencing (lease ${LEASE_MS} ms, heartbeat ${HEARTBEAT_MS} ms): take-over after SIGSTOP ${pauseTakeOverMs} ms; ` +
        `fenced node closed its connection ${Number(closed.t) - resumed} ms after SIGCONT; ` +
        `SIGTERM hand-over ${handOverMs} ms; SIGKILL failover ${failoverMs} ms`,
    );
    expect(pauseTakeOverMs).toBeLessThan(30_000);
    expect(handOverMs).toBeLessThan(5_000);
    expect(failoverMs).toBeLessThan(30_000);
  }, 90_000);
});
