/**
 * POST /admin/projections/:name/rebuild: the read model rebuilt from the log while the app runs equals
 * the live one, and a tampered row is reported (and repaired by the rebuild).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
const ids: Record<string, string> = {};
beforeAll(async () => {
  t = await startTestApp({ env: { MESSAGES_PROJECTION: 'true' } });
  // A few histories: paired and open, waiting for a QR, deleted, one with traffic and settings.
  for (const name of ['rb-open', 'rb-qr', 'rb-gone', 'rb-busy']) {
    const r = await t.request('POST', '/instance/create', {
      body: { name, webhookUrl: 'https://example.test/hook' },
    });
    ids[name] = r.body['id'] as string;
  }
  for (const name of ['rb-open', 'rb-qr', 'rb-busy']) {
    await t.request('POST', '/instance/connect', { body: { instanceName: name } });
    const c = await eventually(() => t.fake.connection(ids[name] ?? ''));
    c.issueQr();
    if (name !== 'rb-qr') c.scan();
  }
  await eventually(
    async () => (await t.request('GET', '/instance/status?instanceName=rb-busy')).body['state'] === 'open',
  );
  await t.request('PUT', '/instance/rb-busy/advanced-settings', {
    body: { rejectCall: true, msgRejectCall: 'busy' },
  });
  const busy = t.fake.live(ids['rb-busy'] ?? '');
  busy.deliver({
    type: 'MessageReceived',
    data: {
      at: new Date().toISOString(),
      messageId: 'M1',
      chatJid: '5511888888888@s.whatsapp.net',
      senderJid: '5511888888888@s.whatsapp.net',
      fromMe: false,
      messageType: 'text',
      text: 'hello',
      pushName: 'Someone',
      timestamp: new Date().toISOString(),
      isGroup: false,
    },
  });
  await t.request('DELETE', `/instance/delete/${ids['rb-gone']}`);
  await eventually(async () => (await t.zapwire.db.query('SELECT 1 FROM rm_messages')).rows.length > 0);
});
afterAll(async () => {
  await t?.stop();
});

interface TableReport {
  table: string;
  liveRows: number;
  rebuiltRows: number;
  missing: number;
  extra: number;
  changed: number;
  samples: {
    changed: Array<{
      key: Record<string, unknown>;
      columns: Record<string, { live: unknown; rebuilt: unknown }>;
    }>;
    missing: unknown[];
    extra: unknown[];
  };
}
interface Report {
  projection: string;
  equal: boolean;
  events: number;
  tables: TableReport[];
}

describe('rebuild equality', () => {
  it.each(['instances', 'instance_logs', 'messages'])(
    '%s: the rebuilt rows equal the live ones',
    async (name) => {
      const r = await t.request<Report>('POST', `/admin/projections/${name}/rebuild`);
      expect(r.status).toBe(200);
      expect(r.body.projection).toBe(name);
      expect(r.body.tables.length).toBeGreaterThan(0);
      for (const table of r.body.tables) {
        expect(table, table.table).toMatchObject({ missing: 0, extra: 0, changed: 0 });
        expect(table.rebuiltRows).toBe(table.liveRows);
      }
      expect(r.body.equal).toBe(true);
      expect(r.body.events).toBeGreaterThan(0);
    },
  );

  it('stays equal while commands append events during the rebuild (both sides at one checkpoint)', async () => {
    const writes = (async () => {
      for (let i = 0; i < 8; i++) {
        await t.request('PUT', '/instance/rb-busy/advanced-settings', {
          body: { msgRejectCall: `busy ${i}` },
        });
      }
    })();
    const r = await t.request<Report>('POST', '/admin/projections/instances/rebuild');
    await writes;
    expect(r.body.equal).toBe(true);
    const settings = await t.request('GET', '/instance/rb-busy/advanced-settings');
    expect(settings.body['msgRejectCall']).toBe('busy 7');
  });

  it('the comparison has rows to compare (not equal by being empty)', async () => {
    const r = await t.request<Report>('POST', '/admin/projections/instances/rebuild');
    const instances = r.body.tables.find((x) => x.table === 'rm_instances');
    expect(instances?.liveRows).toBe(3);
    const audit = r.body.tables.find((x) => x.table === 'rm_instance_audit');
    expect(audit?.liveRows).toBe(4);
    const messages = await t.request<Report>('POST', '/admin/projections/messages/rebuild');
    expect(messages.body.tables.find((x) => x.table === 'rm_messages')?.liveRows).toBeGreaterThan(0);
  });

  it('detects a tampered, a removed and an invented row, and the rebuild repairs them', async () => {
    const db = t.zapwire.db;
    await db.query(`UPDATE rm_instances SET name = 'tampered', qr_count = 42 WHERE id = $1`, [
      ids['rb-open'],
    ]);
    await db.query('DELETE FROM rm_instance_tokens WHERE instance_id = $1', [ids['rb-qr']]);
    await db.query(`INSERT INTO rm_instance_tokens (token_hash, instance_id) VALUES ('forged', 'nobody')`);
    const r = await t.request<Report>('POST', '/admin/projections/instances/rebuild');
    expect(r.status).toBe(200);
    expect(r.body.equal).toBe(false);
    const instances = r.body.tables.find((x) => x.table === 'rm_instances');
    expect(instances).toMatchObject({ changed: 1, missing: 0, extra: 0 });
    expect(instances?.samples.changed[0]).toEqual({
      key: { id: ids['rb-open'] },
      columns: { name: { live: 'tampered', rebuilt: 'rb-open' }, qr_count: { live: 42, rebuilt: 1 } },
    });
    const tokens = r.body.tables.find((x) => x.table === 'rm_instance_tokens');
    expect(tokens).toMatchObject({ changed: 0, missing: 1, extra: 1 });
    expect(tokens?.samples.missing).toEqual([{ token_hash: 'forged' }]);

    const again = await t.request<Report>('POST', '/admin/projections/instances/rebuild');
    expect(again.body.equal).toBe(true);
    const open = await t.request('GET', `/instance/info/${ids['rb-open']}`);
    expect(open.body['name']).toBe('rb-open');
  });

  it('leaves no copies behind and the projection keeps up afterwards', async () => {
    const { rows } = await t.zapwire.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_tables WHERE tablename LIKE 'zw_rebuild_check_%'`,
    );
    expect(rows[0]?.n).toBe(0);
    const r = await t.request('POST', '/instance/create', { body: { name: 'rb-after' } });
    expect(r.status).toBe(201);
    expect((await t.request('GET', '/instance/info/rb-after')).status).toBe(200);
  });

  it('is admin only, and names the projections on a typo', async () => {
    const created = await t.request('POST', '/instance/create', {
      body: { name: 'rb-token', token: 'rb-token-abcdef01' },
    });
    expect(created.status).toBe(201);
    expect(
      (await t.request('POST', '/admin/projections/instances/rebuild', { apikey: 'rb-token-abcdef01' }))
        .status,
    ).toBe(403);
    expect((await t.request('POST', '/admin/projections/instances/rebuild', { apikey: null })).status).toBe(
      401,
    );
    const typo = await t.request('POST', '/admin/projections/instance/rebuild');
    expect(typo.status).toBe(404);
    expect((typo.body['error'] as { message: string }).message).toMatch(/instances, instance_logs, messages/);
    const list = await t.request<Array<{ name: string }>>('GET', '/admin/projections');
    expect(list.body.map((p) => p.name)).toEqual(['instances', 'instance_logs', 'messages']);
  });
});
