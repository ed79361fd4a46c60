/**
 * Finding 11: a write to an instance's `wa-` stream that lands after the instance was deleted (a runtime
 * log line about a command that failed late, a send that was in flight) used to create the stream again,
 * keeping a deleted instance's data. The delete now closes the stream first and waits for appends in
 * flight; later ones are refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { whatsappStream } from '../../../src/domain/events.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

async function openInstance(
  name: string,
  body: Record<string, unknown> = {},
): Promise<{ id: string; token: string }> {
  const i = (
    await t.request<{ id: string; token: string }>('POST', '/instance/create', { body: { name, ...body } })
  ).body;
  await t.request('POST', '/instance/connect', { apikey: i.token, body: {} });
  const connection = await eventually(() => t.fake.connection(i.id));
  connection.issueQr();
  connection.scan();
  await eventually(
    async () =>
      (await t.request<{ state: string }>('GET', '/instance/status', { apikey: i.token })).body.state ===
      'open',
  );
  return i;
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const waVersion = (id: string): Promise<number> => t.zapwire.store.streamVersion(whatsappStream(id));

describe('a deleted instance stays deleted', () => {
  it('a runtime log line written after the delete does not recreate the wa- stream', async () => {
    const i = await openInstance('late-log', { advancedSettings: { readMessages: true } });
    const connection = t.fake.live(i.id);
    const markRead = gate();
    let markReadCalled = false;
    // The read receipt hangs until after the delete, then fails: the runtime logs a warning.
    connection.markRead = async () => {
      markReadCalled = true;
      await markRead.promise;
      throw new Error('connection closed');
    };
    const at = new Date().toISOString();
    connection.deliver({
      type: 'MessageReceived',
      data: {
        at,
        messageId: 'late-1',
        chatJid: '5511988887777@s.whatsapp.net',
        senderJid: '5511988887777@s.whatsapp.net',
        fromMe: false,
        pushName: null,
        messageType: 'text',
        text: 'hello',
        timestamp: at,
        isGroup: false,
      },
    });
    await eventually(() => markReadCalled);
    expect(await waVersion(i.id)).toBe(1);
    expect((await t.request('DELETE', `/instance/delete/${i.id}`)).status).toBe(200);
    expect(await waVersion(i.id)).toBe(0);
    markRead.open();
    // Give the late failure time to be logged (and, before the fix, appended).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await waVersion(i.id)).toBe(0);
  });

  it('a send in flight during the delete does not recreate the wa- stream', async () => {
    const i = await openInstance('late-send');
    const connection = t.fake.live(i.id);
    const send = gate();
    let sending = false;
    // WhatsApp took the text; its answer comes back only after the delete removed the streams.
    connection.sendText = async () => {
      sending = true;
      await send.promise;
      return { id: 'late-send-1', timestamp: new Date().toISOString(), status: 'sent' };
    };
    const answer = t.request('POST', '/send/text', {
      apikey: i.token,
      body: { number: '5511988887777', text: 'in flight' },
    });
    await eventually(() => sending);
    expect((await t.request('DELETE', `/instance/delete/${i.id}`)).status).toBe(200);
    send.open();
    // WhatsApp took it: the caller hears so, and nothing of the deleted instance is written again.
    expect((await answer).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await waVersion(i.id)).toBe(0);
    expect(await t.zapwire.store.streamVersion(`outbox-${i.id}`)).toBe(0);
  });

  it('a send whose connection closes on the way waits in the outbox for the connection (202), not a 500', async () => {
    const i = await openInstance('closing-send');
    const connection = t.fake.live(i.id);
    const send = gate();
    const original = connection.sendText.bind(connection);
    let sending = false;
    connection.sendText = async (...args) => {
      sending = true;
      await send.promise;
      return original(...args);
    };
    const answer = t.request<{ state: string; waitingFor: string }>('POST', '/send/text', {
      apikey: i.token,
      body: { number: '5511988887777', text: 'closing' },
    });
    await eventually(() => sending);
    expect((await t.request('POST', '/instance/disconnect', { apikey: i.token })).status).toBe(200);
    send.open();
    const r = await answer;
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ state: 'queued', waitingFor: expect.stringMatching(/not connected/) });
  });
});
