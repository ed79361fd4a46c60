/**
 * Finding 5 (SSRF) through the API: malformed webhook URLs are a clear 400; with
 * WEBHOOK_ALLOW_PRIVATE_NETWORKS=false private targets are a 400 too; and an instance token never reads
 * what a receiver answered (the admin does).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let database: TestDatabase;
let strict: TestApp;
let receiver: WebhookReceiver;

beforeAll(async () => {
  database = await createTestDatabase();
  receiver = await WebhookReceiver.start();
  strict = await startTestApp({
    env: { DATABASE_URL: database.url, WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false' },
  });
});
afterAll(async () => {
  await strict?.stop();
  await receiver?.close();
  await database?.drop();
});

describe('webhook URLs at the API', () => {
  it.each([
    ['http://exa mple/', /spaces/],
    ['http://[::1/', /not a valid URL/],
    ['http://127.0.0.1:5432/', /private, loopback/],
    ['http://169.254.169.254/latest/meta-data/', /private, loopback/],
    ['http://[::ffff:10.0.0.1]/', /private, loopback/],
    ['http://localhost:8080/hook', /this machine/],
  ])('create with webhookUrl %j → 400', async (webhookUrl, problem) => {
    const r = await strict.request<{ error: { code: string; message: string } }>('POST', '/instance/create', {
      body: { name: 'ssrf', webhookUrl },
    });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('ZW_ERR_VALIDATION');
    expect(r.body.error.message).toMatch(problem);
  });

  it('an instance token cannot point its webhook at a private address later either', async () => {
    const created = await strict.request<{ id: string; token: string }>('POST', '/instance/create', {
      body: { name: 'tenant', webhookUrl: 'https://example.com/hook' },
    });
    expect(created.status).toBe(201);
    const { id, token } = created.body;
    const events = await strict.request('PUT', `/instance/${id}/events`, {
      apikey: token,
      body: { webhookUrl: 'http://10.0.0.1/' },
    });
    expect(events.status).toBe(400);
    const connect = await strict.request('POST', '/instance/connect', {
      apikey: token,
      body: { webhookUrl: 'http://192.168.0.1/' },
    });
    expect(connect.status).toBe(400);
    const info = await strict.request<{ webhookUrl: string }>('GET', `/instance/info/${id}`);
    expect(info.body.webhookUrl).toBe('https://example.com/hook');
  });
});

describe('what a tenant learns of its webhook', () => {
  it('shows an instance token the status of a failed delivery but not the body the receiver answered', async () => {
    const db = await createTestDatabase();
    // Private networks allowed (the default): the receiver is on 127.0.0.1.
    const t = await startTestApp({ env: { DATABASE_URL: db.url } });
    try {
      receiver.respond({ status: 500, body: 'SSH-2.0-OpenSSH_9.6 internal-banner' });
      const created = await t.request<{ id: string; token: string }>('POST', '/instance/create', {
        body: { name: 'scanner', webhookUrl: receiver.url(), events: ['ALL'] },
      });
      const { id, token } = created.body;
      await t.request('POST', '/instance/connect', { apikey: token });
      type Status = {
        queues: Array<{ lastError: string | null; lastStatusCode: number | null; reason: string }>;
      };
      const admin = await eventually(async () => {
        const r = await t.request<Status>('GET', `/instance/${id}/webhook`);
        return r.body.queues.find((q) => q.lastStatusCode === 500) ? r : undefined;
      }, 15_000);
      expect(JSON.stringify(admin.body)).toContain('internal-banner');
      const tenant = await t.request<Status>('GET', `/instance/${id}/webhook`, { apikey: token });
      expect(tenant.status).toBe(200);
      expect(tenant.body.queues.map((q) => q.lastError)).toEqual(['HTTP 500']);
      expect(JSON.stringify(tenant.body)).not.toContain('internal-banner');
    } finally {
      await t.stop();
      await db.drop();
    }
  });

  it('a refused event: the tenant sees its dead letter with the status code, not the body', async () => {
    const db = await createTestDatabase();
    const t = await startTestApp({ env: { DATABASE_URL: db.url } });
    try {
      receiver.respond({ status: 403, body: 'internal-banner: admin console' });
      const created = await t.request<{ id: string; token: string }>('POST', '/instance/create', {
        body: { name: 'refused', webhookUrl: receiver.url(), events: ['ALL'] },
      });
      const { id, token } = created.body;
      await t.request('POST', '/instance/connect', { apikey: token });
      type Letters = { deadLetters: Array<{ error: string; statusCode: number | null }> };
      await eventually(async () => {
        const r = await t.request<Letters>('GET', `/instance/${id}/webhook/dead-letters`);
        return r.body.deadLetters.length > 0 ? r : undefined;
      }, 15_000);
      const tenant = await t.request<Letters>('GET', `/instance/${id}/webhook/dead-letters`, {
        apikey: token,
      });
      expect(tenant.body.deadLetters[0]).toMatchObject({
        error: 'refused by the receiver: HTTP 403',
        statusCode: 403,
      });
      expect(JSON.stringify(tenant.body)).not.toContain('internal-banner');
    } finally {
      await t.stop();
      await db.drop();
    }
  });
});
