/**
 * Restart on the same data (graceful and killed-like) and delete: nothing of a deleted instance's content
 * stays in the read model or the event store.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { FakeWhatsAppConnector } from '../../../src/whatsapp/fake.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.stop().catch(() => undefined);
});

async function openPaired(t: TestApp, name: string): Promise<{ id: string; token: string }> {
  const token = `${name}-token-abcdef`;
  const r = await t.request('POST', '/instance/create', { body: { name, token } });
  const id = r.body['id'] as string;
  await t.request('POST', '/instance/connect', { apikey: token });
  const c = await eventually(() => t.fake.connection(id));
  c.issueQr();
  c.scan({ jid: `55119${name.length}@s.whatsapp.net`, pushName: name });
  await eventually(
    async () => (await t.request('GET', '/instance/status', { apikey: token })).body['state'] === 'open',
  );
  return { id, token };
}

describe('restart', () => {
  it('restores states; paired instances reconnect without a QR, never-paired ones stay idle', async () => {
    const first = await startTestApp();
    apps.push(first);
    const paired = await openPaired(first, 'paired');
    const waiting = await first.request('POST', '/instance/create', {
      body: { name: 'waiting', token: 'waiting-token-123' },
    });
    await first.request('POST', '/instance/connect', { apikey: 'waiting-token-123' });
    const c = await eventually(() => first.fake.connection(waiting.body['id'] as string));
    c.issueQr();
    const idle = await first.request('POST', '/instance/create', {
      body: { name: 'idle', token: 'idle-token-123456' },
    });

    // The phone side keeps the paired session across the restart (as WhatsApp does).
    const phones = new FakeWhatsAppConnector();
    phones.saveSession(paired.id, { jid: '551196@s.whatsapp.net', pushName: 'paired' });
    const second = await first.restart({ fake: phones });
    apps.push(second);

    await eventually(
      async () =>
        (await second.request('GET', '/instance/status', { apikey: paired.token })).body['state'] === 'open',
    );
    expect(
      phones
        .connections(paired.id)
        .flatMap((c) => c.signals)
        .filter((s) => s.type === 'qr').length,
    ).toBe(0);
    expect(
      (await second.request('GET', '/instance/status', { apikey: 'waiting-token-123' })).body['state'],
    ).toBe('disconnected');
    expect(
      (await second.request('GET', '/instance/status', { apikey: 'idle-token-123456' })).body['state'],
    ).toBe('created');
    expect(phones.openCount(waiting.body['id'] as string)).toBe(0);
    expect(phones.openCount(idle.body['id'] as string)).toBe(0);
    // The logs are a projection: it may be a moment behind the restore that just happened.
    await expect
      .poll(
        async () =>
          (await second.request<Array<{ message: string }>>('GET', `/instance/logs/${paired.id}`)).body
            .map((l) => l.message)
            .join('\n'),
        { timeout: 15_000 },
      )
      .toMatch(/connecting \(restore\)/);
  });
});

describe('delete', () => {
  it('leaves no content of the instance in the read model or the event store', async () => {
    const t = await startTestApp({ env: { MESSAGES_PROJECTION: 'true' } });
    apps.push(t);
    const keep = await openPaired(t, 'keeper');
    const gone = await openPaired(t, 'doomed');
    const canary = 'CANARY-7f3a9c-secret-message-text';
    await t.request('POST', `/instance/proxy/${gone.id}`, {
      body: { host: 'p.local', port: 1080, protocol: 'socks5', password: 'PROXY-CANARY-PW' },
    });
    await t.request('POST', '/send/text', {
      apikey: gone.token,
      body: { number: '5511999999999', text: canary },
    });
    t.fake.live(gone.id).deliver({
      type: 'LabelUpdated',
      data: { at: new Date().toISOString(), labelId: 'L1', name: 'LABEL-CANARY', color: 1, deleted: false },
    });
    t.fake.live(gone.id).deliver({
      type: 'MessageReceived',
      data: {
        at: new Date().toISOString(),
        messageId: 'IN-CANARY',
        chatJid: '5511999999999@s.whatsapp.net',
        senderJid: '5511999999999@s.whatsapp.net',
        fromMe: false,
        pushName: null,
        messageType: 'conversation',
        text: `${canary}-incoming`,
        timestamp: new Date().toISOString(),
        isGroup: false,
      },
    });
    await eventually(async () => {
      const { rows } = await t.zapwire.db.query('SELECT 1 FROM rm_labels WHERE instance_id = $1', [gone.id]);
      return rows.length === 1;
    });
    await t.request('POST', '/send/text', {
      apikey: keep.token,
      body: { number: '5511999999999', text: 'kept message' },
    });

    const deleted = await t.request('DELETE', '/instance/delete/doomed');
    expect(deleted.status).toBe(200);
    expect(t.fake.liveCount(gone.id)).toBe(0);
    expect(t.fake.hasSession(gone.id)).toBe(false);

    // Search every table of the database for the canaries, the token and the instance id.
    const { rows: tables } = await t.zapwire.db.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
    );
    const found: string[] = [];
    for (const { table_name } of tables) {
      const { rows } = await t.zapwire.db.query<{ row: string }>(
        `SELECT t::text AS row FROM ${table_name} t`,
      );
      for (const { row } of rows) {
        for (const needle of [canary, 'LABEL-CANARY', 'PROXY-CANARY-PW', gone.token]) {
          if (row.includes(needle)) found.push(`${table_name}: ${needle}`);
        }
        if (
          row.includes(gone.id) &&
          table_name !== 'rm_instance_audit' &&
          !row.includes('InstanceDeletionAudited')
        ) {
          found.push(`${table_name}: instance id in ${row.slice(0, 120)}`);
        }
      }
    }
    expect(found).toEqual([]);

    expect((await t.request('GET', '/instance/status', { apikey: gone.token })).status).toBe(401);
    expect((await t.request('GET', '/instance/info/doomed')).status).toBe(404);
    // The other instance is untouched, and the name can be used again.
    expect((await t.request('GET', '/instance/status', { apikey: keep.token })).body['state']).toBe('open');
    const { rows: kept } = await t.zapwire.db.query('SELECT 1 FROM rm_messages WHERE instance_id = $1', [
      keep.id,
    ]);
    expect(kept).toHaveLength(1);
    expect((await t.request('POST', '/instance/create', { body: { name: 'doomed' } })).status).toBe(201);
  });
});
