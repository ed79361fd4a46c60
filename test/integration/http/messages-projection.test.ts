/**
 * The messages read model is opt-in (MESSAGES_PROJECTION): off by default, nothing is written for an inbound
 * message; turned off after it was on, its tables are emptied (no message content stays behind).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dropDatabaseOfDataDir } from '../../support/postgres.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps.reverse()) await app.stop().catch(() => undefined);
});

async function receiveOne(t: TestApp, name: string, messageId: string): Promise<string> {
  const created = await t.request('POST', '/instance/create', {
    body: { name, token: `${name}-token-123456` },
  });
  const id = created.body['id'] as string;
  await t.request('POST', '/instance/connect', { apikey: `${name}-token-123456` });
  const connection = await eventually(() => t.fake.connection(id));
  connection.issueQr();
  connection.scan({ jid: '5511777777777@s.whatsapp.net', pushName: name });
  await eventually(async () => {
    const r = await t.request('GET', '/instance/status', { apikey: `${name}-token-123456` });
    return r.body['connected'] ? r : undefined;
  });
  connection.deliver({
    type: 'MessageReceived',
    data: {
      at: new Date().toISOString(),
      messageId,
      chatJid: '5511999999999@s.whatsapp.net',
      senderJid: '5511999999999@s.whatsapp.net',
      fromMe: false,
      pushName: 'Cliente',
      messageType: 'conversation',
      text: 'oi',
      timestamp: new Date().toISOString(),
      isGroup: false,
    },
  });
  return id;
}

const messageRows = async (t: TestApp): Promise<number> =>
  (await t.zapwire.db.query('SELECT 1 FROM rm_messages')).rows.length;

describe('MESSAGES_PROJECTION', () => {
  it('is off by default: an inbound message is logged but writes no rm_messages row', async () => {
    const t = await startTestApp();
    apps.push(t);
    const id = await receiveOne(t, 'quiet', 'OFF-1');
    // The message is in the log ...
    await eventually(async () => {
      const events = await t.zapwire.store.readStream(`wa-${id}`);
      return events.some((e) => e.type === 'MessageReceived') ? true : undefined;
    });
    const list = await t.request<Array<{ name: string }>>('GET', '/admin/projections');
    expect(list.body.map((p) => p.name)).toEqual(['instances', 'instance_logs']);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await messageRows(t)).toBe(0);
  });

  it('on: messages are projected; turned off again, the tables are emptied at start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-test-'));
    const first = await startTestApp({ dataDir, env: { MESSAGES_PROJECTION: 'true' } });
    try {
      await receiveOne(first, 'loud', 'ON-1');
      await eventually(async () => ((await messageRows(first)) > 0 ? true : undefined));
    } finally {
      await first.stop();
    }
    const second = await startTestApp({ dataDir, env: { MESSAGES_PROJECTION: 'false' } });
    try {
      expect(await messageRows(second)).toBe(0);
      expect((await second.zapwire.db.query('SELECT 1 FROM rm_labels')).rows).toEqual([]);
    } finally {
      await second.stop();
      await dropDatabaseOfDataDir(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
