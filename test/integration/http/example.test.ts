/**
 * The specification's "Exemplo Completo" through HTTP, with the fake WhatsApp connection: create →
 * connect → QR → scan → open → send a text → an incoming text becomes a message row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { MESSAGES_PROJECTION: 'true' } });
});
afterAll(async () => {
  await t?.stop();
});

describe('Exemplo Completo (fake WhatsApp)', () => {
  it('goes from nothing to a sent and a received message', async () => {
    const created = await t.request('POST', '/instance/create', {
      body: { name: 'vendas', token: 'token-vendas-123' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'vendas',
      token: 'token-vendas-123',
      connected: false,
      state: 'created',
    });
    const id = created.body['id'] as string;

    const early = await t.request('GET', '/instance/qr?instanceName=vendas');
    expect(early.status).toBe(404);
    expect((early.body['error'] as { message: string }).message).toMatch(/POST \/instance\/connect/);

    const connected = await t.request('POST', '/instance/connect', {
      body: { instanceName: 'vendas', webhookUrl: 'https://meusite.com/webhook', subscribe: ['MESSAGE'] },
    });
    expect(connected.status).toBe(200);
    expect(connected.body['state']).toBe('connecting');

    const info = await t.request('GET', `/instance/info/${id}`);
    expect(info.body).toMatchObject({ webhookUrl: 'https://meusite.com/webhook', events: ['MESSAGE'] });

    const connection = await eventually(() => t.fake.connection(id));
    const code = connection.issueQr('2@abcdef,ghijkl,mnopqr,stuvwx');
    const qr = await eventually(async () => {
      const r = await t.request('GET', '/instance/qr?instanceName=vendas');
      return r.status === 200 ? r : undefined;
    });
    const [image, text] = String(qr.body['qrcode']).split('|');
    expect(image).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/=]{100,}$/);
    expect(text).toBe(code);

    connection.scan({ jid: '5511888888888@s.whatsapp.net', pushName: 'João Silva' });
    const status = await eventually(async () => {
      const r = await t.request('GET', '/instance/status', { apikey: 'token-vendas-123' });
      return r.body['connected'] ? r : undefined;
    });
    expect(status.body).toMatchObject({
      state: 'open',
      connected: true,
      loggedIn: true,
      jid: '5511888888888@s.whatsapp.net',
      name: 'João Silva',
    });

    const qrWhenOpen = await t.request('GET', '/instance/qr', { apikey: 'token-vendas-123' });
    expect(qrWhenOpen.status).toBe(409);

    const sent = await t.request('POST', '/send/text', {
      apikey: 'token-vendas-123',
      body: { number: '5511999999999', text: 'Olá! Primeira mensagem!' },
    });
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({ status: expect.any(String), to: '5511999999999@s.whatsapp.net' });
    expect(t.fake.sentBy(id).map((m) => [m.to, m.text])).toEqual([
      ['5511999999999@s.whatsapp.net', 'Olá! Primeira mensagem!'],
    ]);

    connection.deliver({
      type: 'MessageReceived',
      data: {
        at: new Date().toISOString(),
        messageId: 'IN-1',
        chatJid: '5511999999999@s.whatsapp.net',
        senderJid: '5511999999999@s.whatsapp.net',
        fromMe: false,
        pushName: 'Cliente',
        messageType: 'conversation',
        text: 'Oi, tudo bem?',
        timestamp: new Date().toISOString(),
        isGroup: false,
      },
    });
    const rows = await eventually(async () => {
      const { rows } = await t.zapwire.db.query<{ message_id: string; text: string; from_me: boolean }>(
        'SELECT message_id, text, from_me FROM rm_messages WHERE instance_id = $1 ORDER BY from_me',
        [id],
      );
      return rows.length === 2 ? rows : undefined;
    });
    expect(rows.map((r) => [r.from_me, r.text])).toEqual([
      [false, 'Oi, tudo bem?'],
      [true, 'Olá! Primeira mensagem!'],
    ]);
    // The instance's own log lines (its webhook at meusite.com cannot be reached from here) aside.
    const events = (await t.zapwire.store.readStream(`wa-${id}`)).filter((e) => e.type !== 'RuntimeLogged');
    expect(events.map((e) => e.type)).toEqual(['MessageSent', 'MessageReceived']);

    const logs = await t.request('GET', `/instance/logs/${id}?limit=50`);
    expect(logs.status).toBe(200);
    expect((logs.body as unknown as Array<{ message: string }>).map((l) => l.message)).toContain(
      'connected to WhatsApp',
    );
  });

  it('publishes an OpenAPI document generated from the route schemas, and Swagger UI', async () => {
    const spec = await t.request<{ openapi: string; paths: Record<string, unknown> }>('GET', '/docs/json', {
      apikey: null,
    });
    expect(spec.status).toBe(200);
    expect(spec.body.openapi).toMatch(/^3\./);
    for (const path of [
      '/instance/create',
      '/instance/connect',
      '/instance/qr',
      '/instance/pair',
      '/send/text',
      '/instance/delete/{id}',
    ]) {
      expect(Object.keys(spec.body.paths)).toContain(path);
    }
    const ui = await t.request('GET', '/docs/', { apikey: null });
    expect(ui.status).toBe(200);
    expect(String(ui.body)).toContain('swagger');
  });
});
