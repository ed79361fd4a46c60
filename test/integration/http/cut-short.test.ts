/**
 * Issue 22 item 2, the class: an operation that spans several stores and is cut short half-way is
 * finished when the server starts again, instead of leaving state behind. A fault is injected in the real
 * database (a trigger that refuses one DELETE) or in the fake WhatsApp side, the request fails, the app
 * restarts on the same data, and the rest of the operation happens:
 * - a delete: no ghost (history 404, name and token free);
 * - a token rotation: the retired token's reservation stream does not outlive it (nor the instance);
 * - a logout: the WhatsApp session is removed, or the next connect would log in again without a QR.
 * The SIGKILL version of the delete is test/integration/security/delete-crash.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { FakeWhatsAppConnector } from '../../../src/whatsapp/fake.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.stop().catch(() => undefined);
});

/** Makes the database refuse deleting one stream until `allow` runs. */
async function refuseDeleting(t: TestApp, stream: string): Promise<{ allow(): Promise<void> }> {
  await t.zapwire.db.query(`CREATE OR REPLACE FUNCTION zw_test_refuse_delete() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault: stream % may not be deleted', OLD.stream_id; END $$`);
  await t.zapwire.db.query(
    `CREATE TRIGGER zw_test_refuse BEFORE DELETE ON es_streams FOR EACH ROW
       WHEN (OLD.stream_id = '${stream.replace(/'/g, "''")}') EXECUTE FUNCTION zw_test_refuse_delete()`,
  );
  return {
    allow: async () => {
      await t.zapwire.db.query('DROP TRIGGER zw_test_refuse ON es_streams');
    },
  };
}

async function streamExists(t: TestApp, stream: string): Promise<boolean> {
  return (await t.zapwire.store.streamVersion(stream)) > 0;
}

describe('operations cut short are finished at start', () => {
  it('a delete that failed half-way leaves no ghost once the server restarts', async () => {
    const first = await startTestApp();
    apps.push(first);
    const created = await first.request('POST', '/instance/create', {
      body: { name: 'half-deleted', token: 'half-deleted-token-0123' },
    });
    const id = created.body['id'] as string;
    const fault = await refuseDeleting(first, 'name-half-deleted');
    const deleted = await first.request('DELETE', `/instance/delete/${id}`);
    expect(deleted.status).toBeGreaterThanOrEqual(500);
    await fault.allow();
    // Half-way: gone from the listings, still in the log.
    expect((await first.request('GET', `/instance/info/${id}`)).status).toBe(404);

    const second = await first.restart();
    apps.push(second);
    // The restarted server finishes the delete in the background, right after start.
    await eventually(
      async () => (await second.zapwire.db.query('SELECT 1 FROM zw_pending_deletions')).rows.length === 0,
      15_000,
    );
    expect((await second.request('GET', `/instance/${id}/history`)).status).toBe(404);
    expect(
      (await second.request('GET', '/instance/status', { apikey: 'half-deleted-token-0123' })).status,
    ).toBe(401);
    const again = await second.request('POST', '/instance/create', {
      body: { name: 'half-deleted', token: 'half-deleted-token-0123' },
    });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    const { rows } = await second.zapwire.db.query(
      'SELECT deleted_at FROM rm_instance_audit WHERE instance_id = $1 AND deleted_at IS NOT NULL',
      [id],
    );
    expect(rows).toHaveLength(1);
  });

  it('a token rotation that failed after revoking deletes the old token stream at the next start', async () => {
    const first = await startTestApp();
    apps.push(first);
    const created = await first.request('POST', '/instance/create', {
      body: { name: 'rotated', token: 'rotated-token-0123456789' },
    });
    const id = created.body['id'] as string;
    const { rows } = await first.zapwire.db.query<{ token_hash: string }>(
      'SELECT token_hash FROM rm_instance_tokens WHERE instance_id = $1',
      [id],
    );
    const oldStream = `token-${rows[0]!.token_hash}`;
    const fault = await refuseDeleting(first, oldStream);
    const rotated = await first.request('POST', `/instance/${id}/token/rotate`);
    expect(rotated.status).toBeGreaterThanOrEqual(500);
    await fault.allow();
    // The old token no longer works, but its stream (with the instance id and its digest) is still there.
    expect(
      (await first.request('GET', '/instance/status', { apikey: 'rotated-token-0123456789' })).status,
    ).toBe(401);
    expect(await streamExists(first, oldStream)).toBe(true);

    const second = await first.restart();
    apps.push(second);
    await eventually(async () => !(await streamExists(second, oldStream)));
    // The record goes after the stream it names (a crash in between finds the stream gone and drops it).
    await eventually(
      async () => (await second.zapwire.db.query('SELECT 1 FROM zw_retired_tokens')).rows.length === 0,
    );
    // Whatever the rotation left, a delete leaves no stream naming the instance.
    expect((await second.request('DELETE', `/instance/delete/${id}`)).status).toBe(200);
    const { rows: left } = await second.zapwire.db.query(
      "SELECT stream_id FROM es_events WHERE data->>'instanceId' = $1 AND stream_id <> 'audit-instances'",
      [id],
    );
    expect(left).toEqual([]);
  });

  it('a logout whose session removal failed removes the session at the next start', async () => {
    const first = await startTestApp();
    apps.push(first);
    const token = 'logged-out-token-0123456789';
    const created = await first.request('POST', '/instance/create', { body: { name: 'logged-out', token } });
    const id = created.body['id'] as string;
    await first.request('POST', '/instance/connect', { apikey: token });
    const connection = await eventually(() => first.fake.connection(id));
    connection.issueQr();
    connection.scan();
    await eventually(
      async () =>
        (await first.request('GET', '/instance/status', { apikey: token })).body['state'] === 'open',
    );
    const removeSession = first.fake.removeSession.bind(first.fake);
    first.fake.removeSession = async () => {
      throw new Error('injected fault: the session store is unreachable');
    };
    const loggedOut = await first.request('POST', '/instance/logout', { apikey: token });
    expect(loggedOut.status).toBeGreaterThanOrEqual(500);
    first.fake.removeSession = removeSession;

    // The session rows survived the logout (as they would in PostgreSQL).
    const phones = new FakeWhatsAppConnector();
    phones.saveSession(id);
    const second = await first.restart({ fake: phones });
    apps.push(second);
    await eventually(() => !phones.hasSession(id));
    // So the next connect asks for a QR instead of logging in again.
    await second.request('POST', '/instance/connect', { apikey: token });
    (await eventually(() => phones.connection(id))).issueQr();
    await eventually(
      async () => (await second.request('GET', '/instance/status', { apikey: token })).body['state'] === 'qr',
    );
  });
});
