/**
 * Advanced settings, changed through HTTP and applied live (no reconnect), observed from the WhatsApp
 * side (the sandbox's phones and stanza logs) with real Baileys: rejectCall + msgRejectCall,
 * readMessages, alwaysOnline, ignoreGroups.
 *
 * ignoreStatus cannot be exercised here: the sandbox has no status broadcasts. It is covered by the
 * adapter's unit tests (translate.test.ts, connection.test.ts) and the runtime's own filter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { startE2eApp, eventually, waitForQr, waitForState, type E2eApp } from './harness.ts';

let sandbox: Sandbox;
let app: E2eApp;
let instanceId: string;
let device: string;
const PHONE = '5511955550001';
const CONTACT = '5511955550002';
const OWNER = '5511955550003';

beforeAll(async () => {
  sandbox = await startSandbox();
  app = await startE2eApp({ server: sandbox });
  sandbox.control.createAccount({ phoneNumber: PHONE, name: 'Loja' });
  sandbox.control.createAccount({ phoneNumber: CONTACT, name: 'Cliente' });
  sandbox.control.createAccount({ phoneNumber: OWNER, name: 'Dono do grupo' });
  const created = await app.request<{ id: string }>('POST', '/instance/create', {
    body: {
      name: 'loja',
      advancedSettings: { rejectCall: true, msgRejectCall: 'Não atendemos ligações, mande texto.' },
    },
  });
  instanceId = created.body.id;
  await app.request('POST', '/instance/connect', { body: { instanceName: 'loja' } });
  const qr = await waitForQr(app, 'loja');
  device = (await sandbox.control.scanQr(PHONE, qr.code)).jid;
  await waitForState(app, 'loja', 'open');
});

afterAll(async () => {
  await app?.stop();
  await sandbox?.close();
});

async function settings(patch: Record<string, unknown>): Promise<void> {
  const reply = await app.request('PUT', '/instance/loja/advanced-settings', { body: patch });
  expect(reply.status).toBe(200);
}

async function traffic(type: string): Promise<Array<Record<string, unknown>>> {
  const events = await app.zapwire.store.readStream(`wa-${instanceId}`);
  return events.filter((e) => e.type === type).map((e) => e.data);
}

/** A direct text from the contact, recorded: everything the socket got before it has been handled. */
async function sentinel(text: string): Promise<void> {
  const { id } = await sandbox.control.sendText(CONTACT, PHONE, text);
  await eventually(`sentinel ${text}`, async () =>
    (await traffic('MessageReceived')).some((m) => m['messageId'] === id),
  );
}

describe('advanced settings against the sandbox', () => {
  it('rejectCall: the call is rejected and the caller gets msgRejectCall', async () => {
    const call = sandbox.control.startCall(CONTACT, PHONE);
    await eventually('call rejected', () =>
      sandbox.control.calls(CONTACT).find((c) => c.callId === call.callId && c.status === 'rejected'),
    );
    const message = await sandbox.control.waitForMessage(CONTACT, {
      text: 'Não atendemos ligações, mande texto.',
    });
    expect(message.from).toBe(`${PHONE}@s.whatsapp.net`);
    const calls = await traffic('CallReceived');
    expect(calls.some((c) => c['callId'] === call.callId && c['status'] === 'offer')).toBe(true);
  });

  it('readMessages: off, no read receipt; switched on live, incoming texts are marked read', async () => {
    const before = await sandbox.control.sendText(CONTACT, PHONE, 'antes');
    await sandbox.control.waitForReceipt(CONTACT, before.id);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(sandbox.control.receipts(CONTACT).filter((r) => r.id === before.id && r.type === 'read')).toEqual(
      [],
    );

    await settings({ readMessages: true });
    const after = await sandbox.control.sendText(CONTACT, PHONE, 'depois');
    const read = await sandbox.control.waitForReceipt(CONTACT, after.id, { type: 'read' });
    expect(read.from).toBe(`${PHONE}@s.whatsapp.net`);
    await settings({ readMessages: false });
  });

  it('alwaysOnline: switched on live, the device announces itself available; off, unavailable', async () => {
    const presences = () =>
      sandbox.control
        .log(device)
        .filter((s) => s.dir === 'in' && s.tag === 'presence')
        .map((s) => s.attrs['type']);
    const seen = presences().length;
    await settings({ alwaysOnline: true });
    await eventually('available', () => presences().slice(seen).includes('available'));
    const online = presences().length;
    await settings({ alwaysOnline: false });
    await eventually('unavailable', () => presences().slice(online).includes('unavailable'));
    expect(
      (await app.request<{ state: string }>('GET', '/instance/status?instanceName=loja')).body.state,
    ).toBe('open');
  });

  it('ignoreGroups: group traffic is recorded while off and dropped once switched on', async () => {
    const group = sandbox.control.createGroup(OWNER, 'Clientes VIP', [PHONE, CONTACT]);
    sandbox.control.groupUpdate(group.jid, OWNER, { subject: 'Clientes VIP 2' });
    await eventually('GroupUpdated recorded', async () =>
      (await traffic('GroupUpdated')).some((g) => g['groupJid'] === group.jid),
    );
    const updates = (await traffic('GroupUpdated')).length;
    const participants = (await traffic('GroupParticipantsUpdated')).length;

    await settings({ ignoreGroups: true });
    sandbox.control.groupUpdate(group.jid, OWNER, { subject: 'Clientes VIP 3' });
    sandbox.control.groupParticipantsRemove(group.jid, OWNER, [CONTACT]);
    await sentinel('depois do grupo');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await traffic('GroupUpdated')).toHaveLength(updates);
    expect(await traffic('GroupParticipantsUpdated')).toHaveLength(participants);
    await settings({ ignoreGroups: false });
  });
});
