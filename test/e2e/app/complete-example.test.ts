/**
 * The specification's complete example ("Do Zero até Enviar Mensagem"), through HTTP only, with real
 * Baileys against the sandbox: create → connect → QR → the phone scans → open → send a text that the
 * contact's phone decrypts → the contact answers, and the answer becomes a MESSAGE row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { startE2eApp, eventually, waitForQr, waitForState, type E2eApp } from './harness.ts';

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

describe('complete example', () => {
  it('creates, pairs by QR, sends a text the contact reads, and records the answer', async () => {
    const phone = sandbox.control.createAccount({ phoneNumber: '5511999990001', name: 'Vendas' });
    const contact = sandbox.control.createAccount({ phoneNumber: '5511999999999', name: 'Cliente' });

    // 1. Create
    const created = await app.request('POST', '/instance/create', {
      body: { name: 'vendas', token: 'token-vendas-123' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'vendas',
      token: 'token-vendas-123',
      connected: false,
      state: 'created',
    });

    // 2. Connect (with the example's webhook and subscription)
    const connected = await app.request('POST', '/instance/connect', {
      apikey: 'token-vendas-123',
      body: { instanceName: 'vendas', webhookUrl: 'http://127.0.0.1:9/webhook', subscribe: ['MESSAGE'] },
    });
    expect(connected.status).toBe(200);

    // 3–4. The QR appears
    const qr = await waitForQr(app, 'vendas');
    expect(qr.qrcode).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/=]+\|/);
    expect(qr.qrcode.endsWith(`|${qr.code}`)).toBe(true);
    expect(Date.parse(qr.expiresAt)).toBeGreaterThan(Date.now());

    // 5. The phone scans it
    await sandbox.control.scanQr(phone.phoneNumber, qr.code);

    // 6. Connected (pair-success, 515, login with the saved session)
    const open = await waitForState(app, 'vendas', 'open');
    expect(open).toMatchObject({ connected: true, loggedIn: true, jid: '5511999990001@s.whatsapp.net' });

    // 7. Send a message
    const sent = await app.request<{ id: string; status: string; timestamp: string }>('POST', '/send/text', {
      apikey: 'token-vendas-123',
      body: { number: '5511999999999', text: 'Olá! Primeira mensagem!' },
    });
    expect(sent.status).toBe(200);
    expect(sent.body.id).toBeTruthy();
    const received = await sandbox.control.waitForMessage(contact.phoneNumber, {
      text: 'Olá! Primeira mensagem!',
    });
    expect(received.from).toBe('5511999990001@s.whatsapp.net');
    expect(received.message).toHaveProperty('extendedTextMessage');

    // The contact answers: the incoming text becomes a MESSAGE row in the read model.
    const answer = await sandbox.control.sendText(contact.phoneNumber, phone.phoneNumber, 'Oi! Recebi sim.');
    const row = await eventually('the answer in rm_messages', async () => {
      const { rows } = await app.zapwire.db.query<{
        text: string;
        chat_jid: string;
        from_me: boolean;
        push_name: string | null;
      }>('SELECT text, chat_jid, from_me, push_name FROM rm_messages WHERE message_id = $1', [answer.id]);
      return rows[0];
    });
    expect(row).toEqual({
      text: 'Oi! Recebi sim.',
      chat_jid: '5511999999999@s.whatsapp.net',
      from_me: false,
      push_name: 'Cliente',
    });
    // And the sent one is there too, as MESSAGE_SENT.
    const { rows: mine } = await app.zapwire.db.query<{ from_me: boolean; text: string }>(
      'SELECT from_me, text FROM rm_messages WHERE message_id = $1',
      [sent.body.id],
    );
    expect(mine).toEqual([{ from_me: true, text: 'Olá! Primeira mensagem!' }]);
  });
});
