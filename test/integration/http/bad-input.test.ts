/**
 * Bad input → a 4xx that says what is wrong, never a 5xx, never a half-written state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
let id: string;
beforeAll(async () => {
  t = await startTestApp();
  const r = await t.request('POST', '/instance/create', {
    body: { name: 'target', token: 'target-token-1234' },
  });
  id = r.body['id'] as string;
});
afterAll(async () => {
  await t?.stop();
});

interface Case {
  readonly what: string;
  readonly method: 'POST' | 'PUT' | 'GET';
  readonly url: string;
  readonly body?: unknown;
  readonly raw?: string;
  readonly contentType?: string;
  readonly status: number;
  readonly message: RegExp;
}

const long = 'x'.repeat(2 * 1024 * 1024);
const cases: Case[] = [
  {
    what: 'create without a name',
    method: 'POST',
    url: '/instance/create',
    body: {},
    status: 400,
    message: /name/,
  },
  {
    what: 'name of the wrong type',
    method: 'POST',
    url: '/instance/create',
    body: { name: 42 },
    status: 400,
    message: /name/,
  },
  {
    what: 'name with spaces',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'minha instancia' },
    status: 400,
    message: /name/,
  },
  {
    what: 'name with unicode',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'vendas-ção' },
    status: 400,
    message: /name/,
  },
  {
    what: 'name with a control character',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'ven\u0000das' },
    status: 400,
    message: /name/,
  },
  {
    what: 'name too long',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'a'.repeat(65) },
    status: 400,
    message: /name/,
  },
  {
    what: 'duplicate name (any case)',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'TARGET' },
    status: 409,
    message: /already exists/,
  },
  {
    what: 'duplicate token',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'other', token: 'target-token-1234' },
    status: 409,
    message: /token/,
  },
  {
    what: 'token too short',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'other2', token: 'abc' },
    status: 400,
    message: /token/,
  },
  {
    what: 'unknown event name',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'other3', events: ['MESSAGE', 'NOPE'] },
    status: 400,
    message: /NOPE.*Valid names/,
  },
  {
    what: 'webhook that is not http',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'other4', webhookUrl: 'ftp://x' },
    status: 400,
    message: /webhookUrl/,
  },
  {
    what: 'proxy port out of range',
    method: 'POST',
    url: '/instance/create',
    body: { name: 'other5', proxy: { host: 'h', port: 70000 } },
    status: 400,
    message: /port/,
  },
  {
    what: 'advanced setting of the wrong type',
    method: 'POST',
    url: `/instance/${'ID'}/advanced-settings`,
    body: { rejectCall: 'sometimes' },
    status: 400,
    message: /rejectCall/,
  },
  {
    what: 'empty advanced settings',
    method: 'PUT',
    url: `/instance/${'ID'}/advanced-settings`,
    body: {},
    status: 400,
    message: /at least one setting/,
  },
  {
    what: 'connect with an unknown event',
    method: 'POST',
    url: '/instance/connect',
    body: { instanceName: 'target', subscribe: ['MESSAGES'] },
    status: 400,
    message: /MESSAGES/,
  },
  {
    what: 'connect with a bad flag',
    method: 'POST',
    url: '/instance/connect',
    body: { instanceName: 'target', rabbitmqEnable: 'yes' },
    status: 400,
    message: /rabbitmqEnable/,
  },
  {
    what: 'pair without a phone',
    method: 'POST',
    url: '/instance/pair',
    body: { instanceName: 'target' },
    status: 400,
    message: /phone/,
  },
  {
    what: 'pair with letters',
    method: 'POST',
    url: '/instance/pair',
    body: { instanceName: 'target', phone: 'call-me' },
    status: 400,
    message: /phone/,
  },
  {
    what: 'send without text',
    method: 'POST',
    url: '/send/text',
    body: { instanceName: 'target', number: '5511999999999' },
    status: 400,
    message: /text/,
  },
  {
    what: 'malformed JSON',
    method: 'POST',
    url: '/instance/create',
    raw: '{"name": ',
    status: 400,
    message: /JSON|body/i,
  },
  {
    what: 'oversized body',
    method: 'POST',
    url: '/instance/create',
    raw: JSON.stringify({ name: long }),
    status: 413,
    message: /too large/,
  },
  {
    what: 'not JSON',
    method: 'POST',
    url: '/instance/create',
    raw: 'name=x',
    contentType: 'application/x-www-form-urlencoded',
    status: 415,
    message: /JSON/,
  },
  {
    what: 'logs with a bad level',
    method: 'GET',
    url: `/instance/logs/${'ID'}?level=LOUD`,
    status: 400,
    message: /level/,
  },
  {
    what: 'logs with a bad limit',
    method: 'GET',
    url: `/instance/logs/${'ID'}?limit=-1`,
    status: 400,
    message: /limit/,
  },
  { what: 'unknown route', method: 'GET', url: '/instance/nothing-here', status: 404, message: /no route/ },
];

describe('bad input', () => {
  for (const c of cases) {
    it(c.what, async () => {
      const url = c.url.replace('ID', id);
      const r = await t.request(c.method, url, {
        ...(c.raw !== undefined ? { rawBody: c.raw, contentType: c.contentType ?? 'application/json' } : {}),
        ...(c.body !== undefined ? { body: c.body } : {}),
      });
      expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(c.status);
      const error = r.body['error'] as { code: string; message: string };
      expect(error.code).toMatch(/^ZW_ERR_/);
      expect(error.message).toMatch(c.message);
    });
  }

  it('sending to a number that is not one is a 400 that says what to send', async () => {
    const r = await t.request('POST', '/send/text', {
      apikey: 'target-token-1234',
      body: { number: 'abc', text: 'hi' },
    });
    expect(r.status).toBe(400);
    expect((r.body['error'] as { message: string }).message).toMatch(/country code/);
  });

  it('no failed create left anything behind', async () => {
    const all = await t.request<Array<{ name: string }>>('GET', '/instance/all');
    expect(all.body.map((i) => i.name)).toEqual(['target']);
  });
});
