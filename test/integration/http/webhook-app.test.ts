/**
 * The whole app with its sinks: a subscribed event reaches a real HTTP receiver, signed with the secret
 * returned at create; events the instance did not subscribe to do not; the token never travels.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
let receiver: WebhookReceiver;
beforeAll(async () => {
  receiver = await WebhookReceiver.start();
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
  await receiver?.close();
});

describe('webhook from the app', () => {
  it('delivers subscribed events, signed, and nothing else', async () => {
    const created = await t.request('POST', '/instance/create', {
      body: {
        name: 'hooked',
        token: 'hooked-token-123',
        webhookUrl: receiver.url(),
        events: ['MESSAGE', 'CONNECTION_UPDATE'],
      },
    });
    expect(created.status).toBe(201);
    const id = created.body['id'] as string;
    const secret = created.body['webhookSecret'] as string;
    expect(secret.length).toBeGreaterThan(20);

    await t.request('POST', '/instance/connect', { apikey: 'hooked-token-123' });
    const connection = await eventually(() => t.fake.connection(id));
    connection.issueQr();
    connection.scan();
    await eventually(
      async () =>
        (await t.request('GET', '/instance/status', { apikey: 'hooked-token-123' })).body['state'] === 'open',
    );
    connection.deliver({
      type: 'PresenceUpdated',
      data: {
        at: new Date().toISOString(),
        chatJid: 'x@s.whatsapp.net',
        participantJid: 'x@s.whatsapp.net',
        presence: 'available',
      },
    });
    connection.deliver({
      type: 'MessageReceived',
      data: {
        at: new Date().toISOString(),
        messageId: 'HOOK-1',
        chatJid: '5511999999999@s.whatsapp.net',
        senderJid: '5511999999999@s.whatsapp.net',
        fromMe: false,
        pushName: 'Cliente',
        messageType: 'conversation',
        text: 'olá webhook',
        timestamp: new Date().toISOString(),
        isGroup: false,
      },
    });
    await eventually(() => receiver.requests.some((r) => JSON.parse(r.rawBody).event === 'MESSAGE'), 15_000);
    const bodies = receiver.requests.map(
      (r) =>
        JSON.parse(r.rawBody) as {
          id: string;
          event: string;
          instance: { id: string; name: string };
          data: Record<string, unknown>;
        },
    );
    expect(bodies.map((b) => b.event)).not.toContain('PRESENCE_UPDATE');
    expect(bodies.map((b) => b.event)).not.toContain('QR_CODE');
    expect(bodies.map((b) => b.event)).toContain('CONNECTION_UPDATE');
    const message = receiver.requests.find((r) => JSON.parse(r.rawBody).event === 'MESSAGE')!;
    // Stripe-style: the timestamp header is signed with the body, so it cannot be replaced.
    const timestamp = message.headers['x-zapwire-timestamp'] as string;
    const expected = `v1=${createHmac('sha256', secret).update(`${timestamp}.${message.rawBody}`).digest('hex')}`;
    expect(message.headers['x-zapwire-signature']).toBe(expected);
    const body = JSON.parse(message.rawBody) as {
      instance: { id: string; name: string };
      data: { text: string };
    };
    // zapwire's envelope, unchanged by the per-profile renderer (default profile).
    expect(Object.keys(body)).toEqual(['id', 'event', 'instance', 'timestamp', 'position', 'data']);
    expect(body.instance).toEqual({ id, name: 'hooked' });
    expect(body.data.text).toBe('olá webhook');
    for (const r of receiver.requests) expect(r.rawBody).not.toContain('hooked-token-123');
  });
});
