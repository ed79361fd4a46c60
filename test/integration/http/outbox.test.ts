/**
 * The outbox's API with the fake WhatsApp side (the Baileys path is tested on the sandbox in
 * test/e2e/outbox): answers, idempotency keys, scheduling and cancelling, pacing settings and the queue,
 * and the sends a stopped process left behind, sent by the next one with the ids they were recorded with.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SendRefusedError } from '../../../src/whatsapp/port.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { RATE_LIMIT_SEND_PER_MINUTE: '0' } });
});
afterAll(async () => {
  await t?.stop();
});

const TO = '5511999990001';
let serial = 0;

async function openInstance(): Promise<{ id: string; token: string }> {
  const name = `outbox-${++serial}`;
  const token = `${name}-token-abcdef`;
  const created = await t.request('POST', '/instance/create', { body: { name, token } });
  expect(created.status).toBe(201);
  const id = created.body['id'] as string;
  await t.request('POST', '/instance/connect', { apikey: token, body: {} });
  const connection = await eventually(() => t.fake.connection(id));
  connection.issueQr();
  await eventually(async () => {
    const status = await t.request('GET', '/instance/status', { apikey: token });
    return status.body['state'] === 'qr';
  });
  connection.scan();
  await eventually(async () => {
    const status = await t.request('GET', '/instance/status', { apikey: token });
    return status.body['state'] === 'open';
  });
  return { id, token };
}

function send(token: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return t.request('POST', '/send/text', { apikey: token, body: { number: TO, ...body }, headers });
}

describe('POST /send/text through the outbox', () => {
  it('answers 200 once sent, with the WhatsApp id chosen before the send and the send to follow', async () => {
    const i = await openInstance();
    const sent = await send(i.token, { text: 'hello' });
    expect(sent.status).toBe(200);
    expect(sent.body).toMatchObject({
      id: expect.stringMatching(/^3EB0[0-9A-F]{18}$/),
      status: 'SERVER_ACK',
    });
    expect(t.fake.sentBy(i.id).map((s) => s.id)).toEqual([sent.body['id']]);
    const state = await t.request('GET', `/instance/${i.id}/sends/${sent.body['sendId'] as string}`, {
      apikey: i.token,
    });
    expect(state.body).toMatchObject({
      state: 'sent',
      messageId: sent.body['id'],
      to: `${TO}@s.whatsapp.net`,
    });
  });

  it('does not wait with Prefer: respond-async: 202 with the send unless it is done already', async () => {
    const i = await openInstance();
    await t.request('PUT', `/instance/${i.id}/send-settings`, {
      apikey: i.token,
      body: { messagesPerMinute: 60 },
    });
    const first = await send(i.token, { text: 'now' }, { Prefer: 'respond-async' });
    const accepted = await send(i.token, { text: 'later' }, { Prefer: 'respond-async' });
    expect([200, 202]).toContain(first.status);
    expect(accepted.status).toBe(202);
    expect(accepted.body).toMatchObject({
      sendId: expect.any(String),
      messageId: expect.any(String),
      state: 'queued',
    });
    await eventually(() => t.fake.sentBy(i.id).length === 2, 5_000);
  });

  it('still refuses a send to a disconnected instance without recording it', async () => {
    const i = await openInstance();
    await t.request('POST', '/instance/disconnect', { apikey: i.token });
    const refused = await send(i.token, { text: 'x' });
    expect(refused.status).toBe(409);
    const outbox = await t.request('GET', `/instance/${i.id}/outbox`, { apikey: i.token });
    expect(outbox.body).toMatchObject({ queued: 0, scheduled: 0, sending: 0 });
  });
});

describe('Idempotency-Key', () => {
  it('a repeat answers with the first send; another request under the key is a 422; a bad key a 400', async () => {
    const i = await openInstance();
    const first = await send(i.token, { text: 'once' }, { 'Idempotency-Key': 'abc-1' });
    const again = await send(i.token, { text: 'once' }, { 'Idempotency-Key': 'abc-1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(t.fake.sentBy(i.id)).toHaveLength(1);
    const other = await send(i.token, { text: 'twice?' }, { 'Idempotency-Key': 'abc-1' });
    expect(other.status).toBe(422);
    expect(other.body['error']).toMatchObject({ code: 'ZW_ERR_IDEMPOTENCY_KEY_REUSED' });
    const bad = await send(i.token, { text: 'x' }, { 'Idempotency-Key': 'with space' });
    expect(bad.status).toBe(400);
    expect((bad.body['error'] as { message: string }).message).toMatch(/Idempotency-Key/);
  });

  it('two requests with one key at the same time make one send', async () => {
    const i = await openInstance();
    const [a, b] = await Promise.all([
      send(i.token, { text: 'race' }, { 'Idempotency-Key': 'same' }),
      send(i.token, { text: 'race' }, { 'Idempotency-Key': 'same' }),
    ]);
    expect(a.body['sendId']).toBe(b.body['sendId']);
    expect(t.fake.sentBy(i.id)).toHaveLength(1);
  });
});

describe('scheduling and cancelling', () => {
  it('keeps a send until sendAt; cancels one still waiting; says why it cannot cancel the rest', async () => {
    const i = await openInstance();
    const at = new Date(Date.now() + 1_500).toISOString();
    const scheduled = await send(i.token, { text: 'at its time', sendAt: at });
    expect(scheduled.status).toBe(202);
    expect(scheduled.body).toMatchObject({
      state: 'scheduled',
      sendAt: at,
      waitingFor: `scheduled for ${at}`,
    });
    const other = await send(i.token, { text: 'never', sendAt: at });
    const cancelled = await t.request('DELETE', `/instance/${i.id}/sends/${other.body['sendId'] as string}`, {
      apikey: i.token,
    });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ state: 'cancelled' });
    const twice = await t.request('DELETE', `/instance/${i.id}/sends/${other.body['sendId'] as string}`, {
      apikey: i.token,
    });
    expect(twice.status).toBe(409);
    expect(t.fake.sentBy(i.id)).toHaveLength(0);
    await eventually(() => t.fake.sentBy(i.id).length === 1, 10_000);
    expect(Date.parse(t.fake.sentBy(i.id)[0]!.timestamp)).toBeGreaterThanOrEqual(Date.parse(at));
    expect(t.fake.sentBy(i.id)[0]!.text).toBe('at its time');
    const unknown = await t.request('GET', `/instance/${i.id}/sends/nope`, { apikey: i.token });
    expect(unknown.status).toBe(404);
    expect(unknown.body['error']).toMatchObject({ code: 'ZW_ERR_SEND_NOT_FOUND' });
  });

  it('refuses a sendAt that is not a time with a zone, or more than a year ahead', async () => {
    const i = await openInstance();
    for (const sendAt of [
      'tomorrow',
      '2030-01-01T10:00:00',
      new Date(Date.now() + 400 * 86_400_000).toISOString(),
    ]) {
      const refused = await send(i.token, { text: 'x', sendAt });
      expect(refused.status).toBe(400);
      expect((refused.body['error'] as { message: string }).message).toMatch(/sendAt/);
    }
  });
});

describe('pacing settings', () => {
  it('are off by default, change live, refuse what is out of range, and pace the queue', async () => {
    const i = await openInstance();
    const defaults = await t.request('GET', `/instance/${i.id}/send-settings`, { apikey: i.token });
    expect(defaults.body).toEqual({
      messagesPerMinute: 0,
      minGapPerRecipientMs: 0,
      jitterMs: 0,
      warmupDays: 0,
      typingMsPerChar: 0,
      typingMaxMs: 8_000,
    });
    const empty = await t.request('PUT', `/instance/${i.id}/send-settings`, { apikey: i.token, body: {} });
    expect(empty.status).toBe(400);
    const negative = await t.request('PUT', `/instance/${i.id}/send-settings`, {
      apikey: i.token,
      body: { messagesPerMinute: -1 },
    });
    expect(negative.status).toBe(400);
    const unknown = await t.request('PUT', `/instance/${i.id}/send-settings`, {
      apikey: i.token,
      body: { perSecond: 3 },
    });
    expect(unknown.status).toBe(400);
    const changed = await t.request('PUT', `/instance/${i.id}/send-settings`, {
      apikey: i.token,
      body: { messagesPerMinute: 120 },
    });
    expect(changed.body).toMatchObject({ messagesPerMinute: 120, jitterMs: 0 });
    const statuses: number[] = [];
    for (let k = 0; k < 4; k++)
      statuses.push((await send(i.token, { text: `p${k}` }, { Prefer: 'respond-async' })).status);
    expect(statuses.slice(1)).toEqual([202, 202, 202]);
    const queue = await t.request('GET', `/instance/${i.id}/outbox`, { apikey: i.token });
    expect((queue.body['queued'] as number) + (queue.body['sending'] as number)).toBeGreaterThanOrEqual(2);
    await eventually(() => t.fake.sentBy(i.id).length === 4, 10_000);
    const times = t.fake.sentBy(i.id).map((s) => Date.parse(s.timestamp));
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(3 * 500 - 20);
    expect(t.fake.sentBy(i.id).map((s) => s.text)).toEqual(['p0', 'p1', 'p2', 'p3']);
  });
});

describe('after a restart', () => {
  it('sends what the stopped process recorded and did not send, with its recorded id, once', async () => {
    const i = await openInstance();
    const at = new Date(Date.now() + 2_000).toISOString();
    const scheduled = await send(
      i.token,
      { text: 'across a restart', sendAt: at },
      { 'Idempotency-Key': 'r-1' },
    );
    expect(scheduled.status).toBe(202);
    t = await t.restart({ fake: t.fake });
    await eventually(async () => {
      const status = await t.request('GET', '/instance/status', { apikey: i.token });
      return status.body['state'] === 'open';
    }, 10_000);
    await eventually(() => t.fake.sentBy(i.id).length === 1, 15_000);
    expect(t.fake.sentBy(i.id)[0]).toMatchObject({
      text: 'across a restart',
      id: scheduled.body['messageId'],
    });
    const repeat = await send(
      i.token,
      { text: 'across a restart', sendAt: at },
      { 'Idempotency-Key': 'r-1' },
    );
    expect(repeat.status).toBe(200);
    expect(repeat.body).toMatchObject({ sendId: scheduled.body['sendId'], id: scheduled.body['messageId'] });
    expect(t.fake.sentBy(i.id)).toHaveLength(1);
  });
  it('keeps a restriction from WhatsApp: the pause and the instance health say so after the restart', async () => {
    const i = await openInstance();
    const connection = t.fake.live(i.id);
    connection.sendText = async () => {
      throw new SendRefusedError('463', 'WhatsApp refused the message (error 463)');
    };
    const refused = await send(i.token, { text: 'refused' });
    expect(refused.status).toBe(502);
    const degraded = (): Promise<boolean> =>
      t.request('GET', `/instance/${i.id}/health`, { apikey: i.token }).then((health) => {
        const verdicts = (health.body['links'] as Array<Record<string, unknown>>).find(
          (l) => l['link'] === 'verdicts',
        );
        return health.body['state'] === 'degraded' && String(verdicts?.['reason']).includes('463');
      });
    await eventually(degraded, 15_000);
    t = await t.restart({ fake: t.fake });
    await eventually(async () => {
      const status = await t.request('GET', '/instance/status', { apikey: i.token });
      return status.body['state'] === 'open';
    }, 10_000);
    const outbox = await t.request('GET', `/instance/${i.id}/outbox`, { apikey: i.token });
    expect(outbox.body['paused']).toMatchObject({ code: '463' });
    // The send that comes next waits for the pause (nothing reaches WhatsApp).
    expect((await send(i.token, { text: 'held' })).status).toBe(202);
    await eventually(degraded, 15_000);
  });
});
