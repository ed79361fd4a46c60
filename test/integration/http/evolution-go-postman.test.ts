/**
 * Evolution GO's own Postman requests (Instance folder, Send Text, Server Health), replayed one by one
 * over real HTTP against zapwire listening with API_COMPAT=evolution-go. Each reply is checked against
 * the shape Evolution GO's code gives that request. The collection is kept as published
 * (test/fixtures/evolution-go/postman-instance-subset.json): bodies with `//` comments, `{{variables}}`,
 * `:path` variables, per-request `apikey` auth.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { ADMIN_KEY, eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

interface PostmanAuth {
  readonly type: string;
  readonly apikey?: ReadonlyArray<{ readonly key: string; readonly value: string }>;
}
interface PostmanRequest {
  readonly method: string;
  readonly auth?: PostmanAuth;
  readonly body?: { readonly raw?: string };
  readonly url: {
    readonly raw: string;
    readonly variable?: ReadonlyArray<{ readonly key: string; readonly value: string }>;
  };
}
interface PostmanItem {
  readonly name: string;
  readonly item?: readonly PostmanItem[];
  readonly request?: PostmanRequest;
}
interface PostmanCollection {
  readonly auth?: PostmanAuth;
  readonly item: readonly PostmanItem[];
}

const collection = JSON.parse(
  readFileSync(new URL('../../fixtures/evolution-go/postman-instance-subset.json', import.meta.url), 'utf8'),
) as PostmanCollection;

function flatten(items: readonly PostmanItem[]): Array<{ name: string; request: PostmanRequest }> {
  return items.flatMap((item) =>
    item.item ? flatten(item.item) : item.request ? [{ name: item.name, request: item.request }] : [],
  );
}

/** Postman sends raw bodies as typed, comments included; Evolution GO users remove them. So do we. */
function stripComments(raw: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < raw.length; i += 1) {
    const c = raw[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += raw[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '/' && raw[i + 1] === '/') {
      while (i < raw.length && raw[i] !== '\n') i += 1;
      out += '\n';
    } else out += c;
  }
  // A comma left before a closing bracket once the lines after it were comments.
  return out.replace(/,(\s*[}\]])/g, '$1');
}

function substitute(text: string, variables: Readonly<Record<string, string>>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (_, name: string) => variables[name] ?? `{{${name}}}`);
}

function apikeyOf(
  auth: PostmanAuth | undefined,
  variables: Readonly<Record<string, string>>,
): string | undefined {
  if (!auth || auth.type !== 'apikey') return undefined;
  const value = auth.apikey?.find((p) => p.key === 'value')?.value;
  return value === undefined ? undefined : substitute(value, variables);
}

interface Reply {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Headers;
}

let t: TestApp;
let base: string;
let receiver: WebhookReceiver;
const requests = flatten(collection.item);
const variables: Record<string, string> = { adminToken: ADMIN_KEY, instance: randomUUID() };

async function send(name: string): Promise<Reply> {
  const entry = requests.find((r) => r.name === name);
  if (!entry) throw new Error(`no request "${name}" in the collection`);
  const { request } = entry;
  let url = substitute(request.url.raw, { ...variables, host: base });
  for (const v of request.url.variable ?? []) url = url.replace(`:${v.key}`, substitute(v.value, variables));
  const apikey = apikeyOf(request.auth ?? collection.auth, variables);
  // The collection's webhook points at a real service: send its deliveries to a local receiver instead.
  const raw = request.body?.raw
    ? stripComments(substitute(request.body.raw, variables)).replace(/https?:\/\/[^"\s]+/g, receiver.url())
    : undefined;
  const response = await fetch(url, {
    method: request.method,
    headers: {
      ...(apikey ? { apikey } : {}),
      ...(raw ? { 'content-type': 'application/json' } : {}),
      origin: 'http://manager.example',
    },
    ...(raw ? { body: raw } : {}),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body, headers: response.headers };
}

const success = (data: unknown) => ({ message: 'success', data });

interface WebhookBody {
  readonly event: string;
  readonly data: Record<string, Record<string, unknown> | undefined>;
  readonly instanceId: string;
  readonly instanceName: string;
  readonly state?: string;
}

/** Evolution GO's webhook body: `{data, event, instanceId, instanceName}` (+ `state`), never `instanceToken`. */
function expectEvolutionWebhook(body: WebhookBody): void {
  expect(Object.keys(body).filter((k) => k !== 'state')).toEqual([
    'data',
    'event',
    'instanceId',
    'instanceName',
  ]);
  expect(body.instanceId).toBe(variables['instance']);
  expect(body.instanceName).toBe('teste');
  expect(body.event).toMatch(/^[A-Z][A-Za-z]+$/);
}
const ok = { message: 'success' };
const anyString = expect.any(String) as unknown;
const anyBoolean = expect.any(Boolean) as unknown;

beforeAll(async () => {
  t = await startTestApp({ env: { API_COMPAT: 'evolution-go', RECONNECT_RATE_LIMIT_MS: '0' } });
  base = await t.zapwire.app.listen({ host: '127.0.0.1', port: 0 });
  receiver = await WebhookReceiver.start();
});
afterAll(async () => {
  await t?.stop();
  await receiver?.close();
});

describe('the Postman collection, request by request', () => {
  it('covers every request it holds', () => {
    expect(requests.map((r) => r.name)).toEqual([
      'Create Instance',
      'Fetch All Instances',
      'Fetch Instance',
      'Get logs',
      'Delete Instance',
      'Set Proxy',
      'Delete Proxy',
      'Instance Connect',
      'Get Status',
      'Get QR',
      'Pairing Code',
      'Disconnect',
      'Reconnect',
      'Logout',
      'Force Reconnect',
      'Get Advanced Settings',
      'Update Advanced Settings',
      'Send Text',
      'Server Health',
    ]);
  });

  it('Server Health', async () => {
    const r = await send('Server Health');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('Create Instance', async () => {
    const r = await send('Create Instance');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject(
      success({ id: variables['instance'], name: 'teste', token: '2ef79c34-b6e1-4969-9e37-12b3d3a9d1014' }),
    );
    variables['token'] = '2ef79c34-b6e1-4969-9e37-12b3d3a9d1014';
  });

  it('Fetch All Instances', async () => {
    const r = await send('Fetch All Instances');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(
      success([
        expect.objectContaining({
          id: variables['instance'],
          token: variables['token'],
          connected: false,
          events: '',
          rabbitmqEnable: anyString,
        }),
      ]),
    );
  });

  it('Fetch Instance', async () => {
    const r = await send('Fetch Instance');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject(success({ id: variables['instance'], name: 'teste', qrcode: '' }));
  });

  it('Get logs', async () => {
    const r = await send('Get logs');
    expect(r.status).toBe(200);
    expect(r.body).toEqual([]); // 2025-04-11..17: before this instance existed
  });

  it('Set Proxy', async () => {
    const r = await send('Set Proxy');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(
      success({ host: 'proxy.example.com', port: '8080', protocol: 'http', hasAuth: true }),
    );
  });

  it('Delete Proxy', async () => {
    const r = await send('Delete Proxy');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(ok);
  });

  it('Instance Connect', async () => {
    const r = await send('Instance Connect');
    // WhatsApp shows a QR a moment later.
    (await eventually(() => t.fake.connection(variables['instance']!))).issueQr();
    expect(r.status).toBe(200);
    expect(r.body).toEqual(
      success({
        jid: '',
        webhookUrl: receiver.url(),
        eventString:
          'MESSAGE,SEND_MESSAGE,READ_RECEIPT,PRESENCE,HISTORY_SYNC,CHAT_PRESENCE,CALL,CONNECTION,LABEL,CONTACT,GROUP,NEWSLETTER,QRCODE',
      }),
    );
  });

  it('Get Status', async () => {
    const r = await send('Get Status');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(success({ Connected: anyBoolean, LoggedIn: false, Name: '' }));
  });

  it('Get QR', async () => {
    const r = await eventually(async () => {
      const reply = await send('Get QR');
      return reply.status === 200 ? reply : undefined;
    });
    expect(r.body).toEqual(
      success({ Qrcode: expect.stringMatching(/^data:image\/png;base64,/) as unknown, Code: anyString }),
    );
  });

  it('Pairing Code', async () => {
    const r = await send('Pairing Code');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(success({ PairingCode: expect.stringMatching(/^\w{4}-\w{4}$/) as unknown }));
    // The phone types the code.
    t.fake.live(variables['instance']!).scan();
    await eventually(async () => {
      const s = (await send('Get Status')).body as { data: { LoggedIn: boolean } };
      return s.data.LoggedIn;
    });
  });

  it("the webhook set at connect received the QR and connection events in Evolution GO's shape, without the token", async () => {
    await eventually(() => receiver.acceptedBodies().some((b) => b['event'] === 'Connected'));
    const bodies = receiver.acceptedBodies<WebhookBody>();
    for (const request of receiver.requests) expect(request.rawBody).not.toContain(variables['token']);
    for (const body of bodies) expectEvolutionWebhook(body);
    const qr = bodies.find((b) => b.event === 'QRCode');
    expect(qr?.data).toEqual({
      qrcode: expect.stringMatching(/^data:image\/png;base64,/) as unknown,
      code: anyString,
      count: 1,
      maxCount: expect.any(Number) as unknown,
    });
    expect(bodies.find((b) => b.event === 'Connected')?.data).toEqual({
      status: 'open',
      jid: expect.stringMatching(/@s\.whatsapp\.net$/) as unknown,
      pushName: anyString,
    });
    // zapwire's own names and envelope never appear in this profile.
    expect(bodies.map((b) => b.event)).not.toContain('CONNECTION_UPDATE');
    expect(receiver.requests[0]!.headers['x-zapwire-event-id']).toEqual(anyString);
  });

  it('Send Text', async () => {
    const r = await send('Send Text');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject(
      success({
        Info: { ID: anyString, Chat: '5511999999999@s.whatsapp.net', IsFromMe: true, IsGroup: false },
        Message: { extendedTextMessage: { text: 'mensagem de teste' } },
      }),
    );
    // The webhook gets Evolution GO's SendMessage for it (subscribed: ALL).
    const id = (r.body as { data: { Info: { ID: string } } }).data.Info.ID;
    await eventually(() =>
      receiver
        .acceptedBodies<WebhookBody>()
        .find((b) => b.event === 'SendMessage' && b.data['Info']?.['ID'] === id),
    );
    const sent = receiver
      .acceptedBodies<WebhookBody>()
      .find((b) => b.event === 'SendMessage' && b.data['Info']?.['ID'] === id)!;
    expectEvolutionWebhook(sent);
    expect(sent.data).toMatchObject({
      Info: { ID: id, Chat: '5511999999999@s.whatsapp.net', IsFromMe: true, IsGroup: false },
      Message: { extendedTextMessage: { text: 'mensagem de teste' } },
      MessageContextInfo: {},
    });
  });

  it("a message the phone receives reaches the webhook as Evolution GO's Message event", async () => {
    t.fake.live(variables['instance']!).deliver({
      type: 'MessageReceived',
      data: {
        at: new Date().toISOString(),
        messageId: 'EVO-IN-1',
        chatJid: '5511988887777@s.whatsapp.net',
        senderJid: '5511988887777@s.whatsapp.net',
        fromMe: false,
        pushName: 'Cliente',
        messageType: 'text',
        text: 'oi',
        timestamp: new Date().toISOString(),
        isGroup: false,
      },
    });
    const message = await eventually(() =>
      receiver.acceptedBodies<WebhookBody>().find((b) => b.event === 'Message'),
    );
    expectEvolutionWebhook(message);
    expect(message.data).toMatchObject({
      Info: {
        ID: 'EVO-IN-1',
        Chat: '5511988887777@s.whatsapp.net',
        Sender: '5511988887777@s.whatsapp.net',
        IsFromMe: false,
        IsGroup: false,
        PushName: 'Cliente',
        Type: 'text',
      },
      Message: { conversation: 'oi' },
    });
  });

  it('Get Advanced Settings', async () => {
    const r = await send('Get Advanced Settings');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      alwaysOnline: false,
      rejectCall: false,
      msgRejectCall: '',
      readMessages: false,
      ignoreGroups: false,
      ignoreStatus: false,
    });
  });

  it('Update Advanced Settings', async () => {
    const r = await send('Update Advanced Settings');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      message: 'Advanced settings updated successfully',
      settings: {
        alwaysOnline: false,
        rejectCall: false,
        msgRejectCall: '',
        readMessages: false,
        ignoreGroups: false,
        ignoreStatus: false,
      },
    });
  });

  it('Disconnect', async () => {
    const r = await send('Disconnect');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(ok);
  });

  it('Reconnect', async () => {
    const r = await send('Reconnect');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(ok);
  });

  it('Force Reconnect (the collection sends no body: Evolution GO needs a number)', async () => {
    const r = await send('Force Reconnect');
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: 'EOF' });
  });

  it('Logout', async () => {
    const r = await send('Logout');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(ok);
  });

  it('Delete Instance (run last: the collection lists it fifth)', async () => {
    const r = await send('Delete Instance');
    expect(r.status).toBe(200);
    expect(r.body).toEqual(ok);
    expect((await send('Fetch All Instances')).body).toEqual(success([]));
  });
});
