/**
 * How many database round trips a request makes before it acts: every query the request's own async
 * context sends to the PostgreSQL pool is recorded (background readers, lease renewals and projections
 * run in other contexts and are not counted). The instance a request is about is resolved once, with
 * the caller: `GET /instance/status` reads one row, and so does `POST /instance/connect` before its
 * command (a lease this node holds is known without a read), in both wire profiles (docs/architecture.md, "How a request flows").
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostgresDatabase } from '../../../src/store/sql/postgres.ts';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

interface Reads {
  readonly queries: string[];
  /** How many queries were sent when the command began (undefined: it did not run). */
  commandAt?: number;
}

const context = new AsyncLocalStorage<Reads>();

/** Records every query the app's pool is asked for, in the asking request's context. */
function countReads(app: TestApp): void {
  const { pool } = app.zapwire.db as PostgresDatabase;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const first = args[0];
    const text = typeof first === 'string' ? first : String((first as { text?: string }).text);
    context.getStore()?.queries.push(text.replace(/\s+/g, ' ').trim());
    return query(...args);
  };
  const commands = app.zapwire.runtime.commands;
  const connect = commands.connect.bind(commands);
  commands.connect = (...args: Parameters<typeof connect>) => {
    const reads = context.getStore();
    if (reads && reads.commandAt === undefined) reads.commandAt = reads.queries.length;
    return connect(...args);
  };
}

async function counted(run: () => Promise<{ status: number; body: unknown }>): Promise<Reads> {
  const reads: Reads = { queries: [] };
  const reply = await context.run(reads, run);
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  return reads;
}

const beforeCommand = (reads: Reads): string[] => {
  expect(reads.commandAt, 'the command ran').toBeDefined();
  return reads.queries.slice(0, reads.commandAt);
};

describe('database reads per request, default profile', () => {
  let app: TestApp;
  let token: string;
  beforeAll(async () => {
    app = await startTestApp();
    countReads(app);
    const created = await app.request<{ token: string }>('POST', '/instance/create', {
      body: { name: 'reads' },
    });
    expect(created.status).toBe(201);
    token = created.body.token;
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
  });

  it('GET /instance/status reads one row, with an instance token or the admin key', async () => {
    const byToken = await counted(() => app.request('GET', '/instance/status', { apikey: token }));
    expect(byToken.queries, byToken.queries.join('\n')).toHaveLength(1);
    const byAdmin = await counted(() => app.request('GET', '/instance/status?instanceName=reads'));
    expect(byAdmin.queries, byAdmin.queries.join('\n')).toHaveLength(1);
  });

  it('POST /instance/connect reads one row before its command', async () => {
    const byToken = beforeCommand(
      await counted(() => app.request('POST', '/instance/connect', { apikey: token, body: {} })),
    );
    expect(byToken, byToken.join('\n')).toHaveLength(1);
    const byAdmin = beforeCommand(
      await counted(() => app.request('POST', '/instance/connect', { body: { instanceName: 'reads' } })),
    );
    expect(byAdmin, byAdmin.join('\n')).toHaveLength(1);
  });
});

describe('database reads per request, Evolution GO profile', () => {
  let app: TestApp;
  const token = 'evo-reads-token-0123456789';
  beforeAll(async () => {
    app = await startTestApp({ env: { API_COMPAT: 'evolution-go' } });
    countReads(app);
    const created = await app.request('POST', '/instance/create', { body: { name: 'Leituras', token } });
    expect(created.status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
  });

  it('GET /instance/status reads one row', async () => {
    const reads = await counted(() => app.request('GET', '/instance/status', { apikey: token }));
    expect(reads.queries, reads.queries.join('\n')).toHaveLength(1);
  });

  it('POST /instance/connect reads one row before its command', async () => {
    const reads = beforeCommand(
      await counted(() => app.request('POST', '/instance/connect', { apikey: token, body: {} })),
    );
    expect(reads, reads.join('\n')).toHaveLength(1);
  });
});
