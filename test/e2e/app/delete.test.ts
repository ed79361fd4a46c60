/**
 * DELETE /instance/delete/:id leaves nothing of the instance's content: no message text, no contact
 * numbers, no session (key) rows, anywhere in the database. Real Baileys on the sandbox; every table
 * of the schema is searched for canaries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { findEverywhere, eventually, startE2eApp, waitForQr, waitForState, type E2eApp } from './harness.ts';

let sandbox: Sandbox;
let app: E2eApp;

beforeAll(async () => {
  sandbox = await startSandbox();
  app = await startE2eApp({ server: sandbox, env: { MESSAGES_PROJECTION: 'true' } });
});

afterAll(async () => {
  await app?.stop();
  await sandbox?.close();
});

const PHONE = '5511933330001';
const CONTACT = '5511933337777';
const CANARY_OUT = 'CANARY-OUT-7f3a9c1e';
const CANARY_IN = 'CANARY-IN-b2d48e60';

async function rowsOf(table: string, instanceId: string): Promise<number> {
  const { rows } = await app.zapwire.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${table} WHERE instance_id = $1`,
    [instanceId],
  );
  return rows[0]?.n ?? 0;
}

describe('delete', () => {
  it('removes message text, contact numbers and every session row of the instance', async () => {
    sandbox.control.createAccount({ phoneNumber: PHONE, name: 'Temporária' });
    sandbox.control.createAccount({ phoneNumber: CONTACT, name: 'Contato' });
    const created = await app.request<{ id: string; token: string }>('POST', '/instance/create', {
      body: { name: 'temporaria' },
    });
    const { id, token } = created.body;
    await app.request('POST', '/instance/connect', { body: { instanceName: 'temporaria' } });
    const qr = await waitForQr(app, 'temporaria');
    await sandbox.control.scanQr(PHONE, qr.code);
    await waitForState(app, 'temporaria', 'open');

    const sent = await app.request('POST', '/send/text', {
      apikey: token,
      body: { number: CONTACT, text: CANARY_OUT },
    });
    expect(sent.status).toBe(200);
    await sandbox.control.waitForMessage(CONTACT, { text: CANARY_OUT });
    const incoming = await sandbox.control.sendText(CONTACT, PHONE, CANARY_IN);
    await eventually('incoming recorded', async () => {
      const { rows } = await app.zapwire.db.query('SELECT 1 FROM rm_messages WHERE message_id = $1', [
        incoming.id,
      ]);
      return rows.length > 0;
    });

    // The canaries are there before (so the search can find them), and so are the session rows.
    expect(await findEverywhere(app, CANARY_OUT)).not.toEqual([]);
    expect(await findEverywhere(app, CANARY_IN)).not.toEqual([]);
    expect(await findEverywhere(app, CONTACT)).not.toEqual([]);
    expect(await rowsOf('wa_auth_state', id)).toBeGreaterThan(0);
    // At rest the session is sealed: the contact's number is not in it even now.
    expect((await findEverywhere(app, CONTACT)).filter((hit) => hit.startsWith('wa_auth_state'))).toEqual([]);

    const deleted = await app.request('DELETE', `/instance/delete/${id}`);
    expect(deleted.status).toBeLessThan(300);

    expect(await findEverywhere(app, CANARY_OUT)).toEqual([]);
    expect(await findEverywhere(app, CANARY_IN)).toEqual([]);
    expect(await findEverywhere(app, CONTACT)).toEqual([]);
    expect(await findEverywhere(app, token)).toEqual([]);
    expect(await rowsOf('wa_auth_state', id)).toBe(0);
    // The device was logged out on WhatsApp before the data went.
    await eventually('device unlinked', () => sandbox.control.devices(PHONE).length === 0);
  });
});
