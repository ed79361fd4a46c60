/**
 * The HTTP control API: JSON over `/control/...`, one route per `SandboxControl` method. Path segments
 * are URL-decoded, so JIDs can be used as they are (`/control/devices/5511999:1@s.whatsapp.net/kick`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SandboxControl } from './control.ts';
import { SandboxError } from './errors.ts';
import type { SendingRestrictionOptions } from './send-faults.ts';
import type { ChatState, KickReason, PresenceState } from './types.ts';
import type { ParticipantAction } from './groups.ts';
import { FAULT_KINDS, type FaultKind, type FaultOptions } from './faults.ts';

type Body = Record<string, unknown>;
type Handler = (params: string[], body: Body, query: URLSearchParams) => unknown;

interface Urls {
  readonly wsUrl: string;
  readonly rootPublicKeyBase64: string;
  readonly controlUrl: string;
}

const MAX_BODY = 1 << 20;

function str(body: Body, key: string, required = true): string {
  const value = body[key];
  if (typeof value === 'string' && value) return value;
  if (required) throw new SandboxError(400, `body.${key} must be a non-empty string`);
  return '';
}

function strings(body: Body, key: string): string[] {
  const value = body[key];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new SandboxError(400, `body.${key} must be an array of strings`);
  }
  return value as string[];
}

function optionalBool(body: Body, key: string): boolean | undefined {
  const value = body[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new SandboxError(400, `body.${key} must be a boolean`);
  return value;
}

function sendingRestrictionOptions(body: Body): SendingRestrictionOptions {
  const { code, count, durationMs } = body;
  if (code !== undefined && code !== '463' && code !== '429' && code !== '479')
    throw new SandboxError(400, 'body.code: "463" (restricted, the default), "429" (rate limit) or "479"');
  for (const [key, value] of [
    ['count', count],
    ['durationMs', durationMs],
  ] as const)
    if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < 1))
      throw new SandboxError(400, `body.${key} must be a positive integer`);
  return {
    ...(code ? { code } : {}),
    ...(typeof count === 'number' ? { count } : {}),
    ...(typeof durationMs === 'number' ? { durationMs } : {}),
  };
}

function routes(control: SandboxControl, urls: () => Urls): [string, RegExp, Handler][] {
  const A = '([^/]+)'; // one path segment
  return [
    ['GET', /^\/control\/?$/, () => ({ ...urls(), env: envFor(urls()) })],
    ['GET', /^\/control\/stats$/, () => control.stats()],
    ['GET', /^\/control\/devices\/connections$/, () => control.deviceConnections()],
    ['GET', /^\/control\/logins$/, (_p, _b, query) => control.logins(Number(query.get('since') ?? 0))],
    ['GET', /^\/control\/accounts$/, () => control.accounts()],
    [
      'POST',
      /^\/control\/accounts$/,
      (_p, b) =>
        control.createAccount({
          phoneNumber: str(b, 'phoneNumber', false) || undefined,
          name: str(b, 'name', false) || undefined,
          lid: str(b, 'lid', false) || undefined,
        }),
    ],
    ['GET', new RegExp(`^/control/accounts/${A}$`), ([a]) => control.account(a!)],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/scan-qr$`),
      // `qr`, or what the gateway's GET /instance/qr returns (`code`, or `qrcode` = "<png>|<code>"): pipe it in.
      ([a], b) => {
        const qr = str(b, 'qr', false) || str(b, 'code', false) || str(b, 'qrcode', false);
        if (!qr) throw new SandboxError(400, 'body.qr (or code, or qrcode) must be the QR string');
        return control.scanQr(a!, qr);
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/pairing-code$`),
      ([a], b) => control.enterPairingCode(a!, str(b, 'code')),
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/messages$`),
      ([a], b) => {
        const opts = {
          id: str(b, 'id', false) || undefined,
          addressing: b.addressing === 'lid' ? ('lid' as const) : undefined,
        };
        if (b.message && typeof b.message === 'object')
          return control.sendMessage(a!, str(b, 'to'), b.message as Body, opts);
        return control.sendText(a!, str(b, 'to'), str(b, 'text'), opts);
      },
    ],
    [
      'GET',
      new RegExp(`^/control/accounts/${A}/messages$`),
      ([a], _b, q) => {
        const wait = q.get('wait');
        if (wait === null) return control.received(a!);
        return control
          .waitForMessage(a!, {
            text: q.get('text') ?? undefined,
            from: q.get('from') ?? undefined,
            timeoutMs: Number(wait) || 10_000,
          })
          .then((m) => [m]);
      },
    ],
    ['GET', new RegExp(`^/control/accounts/${A}/sent$`), ([a]) => control.sent(a!)],
    ['GET', new RegExp(`^/control/accounts/${A}/repeats$`), ([a]) => control.repeats(a!)],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/ack-delay$`),
      ([a], b) => {
        const ms = b.ms;
        if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > 600_000)
          throw new SandboxError(400, 'body.ms must be an integer from 0 (acks at once) to 600000');
        control.delayAcks(a!, ms);
        return { ok: true };
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/sending-restriction$`),
      ([a], b) => control.restrictSending(a!, sendingRestrictionOptions(b)),
    ],
    [
      'GET',
      new RegExp(`^/control/accounts/${A}/sending-restriction$`),
      ([a]) => ({ restriction: control.sendingRestriction(a!) }),
    ],
    [
      'DELETE',
      new RegExp(`^/control/accounts/${A}/sending-restriction$`),
      ([a]) => {
        control.liftSendingRestriction(a!);
        return { ok: true };
      },
    ],
    ['GET', new RegExp(`^/control/accounts/${A}/receipts$`), ([a]) => control.receipts(a!)],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/read$`),
      ([a], b) => ({ sent: control.markRead(a!, strings(b, 'ids')) }),
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/calls$`),
      ([a], b) => control.startCall(a!, str(b, 'to'), { video: optionalBool(b, 'video') }),
    ],
    ['GET', new RegExp(`^/control/accounts/${A}/calls$`), ([a]) => control.calls(a!)],
    [
      'POST',
      new RegExp(`^/control/calls/${A}/end$`),
      ([c], b) => control.endCall(c!, b.reason === 'timeout' ? 'timeout' : undefined),
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/presence$`),
      ([a], b) => {
        const presence = str(b, 'presence');
        if (presence !== 'available' && presence !== 'unavailable')
          throw new SandboxError(400, 'presence: available or unavailable');
        control.setPresence(a!, presence as PresenceState);
        return { ok: true };
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/chatstate$`),
      ([a], b) => {
        const state = str(b, 'state');
        if (!['composing', 'paused', 'recording'].includes(state))
          throw new SandboxError(400, 'state: composing, paused or recording');
        control.sendChatState(a!, str(b, 'to'), state as ChatState);
        return { ok: true };
      },
    ],
    ['GET', new RegExp(`^/control/accounts/${A}/chatstates$`), ([a]) => control.chatStates(a!)],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/contacts$`),
      async ([a], b) => {
        await control.setContact(a!, {
          jid: str(b, 'jid'),
          fullName: str(b, 'fullName', false) || undefined,
          firstName: str(b, 'firstName', false) || undefined,
        });
        return { ok: true };
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/push-name$`),
      async ([a], b) => {
        await control.setPushName(a!, str(b, 'name'));
        return { ok: true };
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/labels$`),
      async ([a], b) => {
        const color = typeof b.color === 'number' ? b.color : undefined;
        await control.editLabel(a!, {
          id: str(b, 'id'),
          name: str(b, 'name'),
          color,
          deleted: optionalBool(b, 'deleted'),
        });
        return { ok: true };
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/labels/${A}/chats$`),
      async ([a, l], b) => {
        await control.labelChat(a!, l!, str(b, 'chatJid'), optionalBool(b, 'labeled') ?? true);
        return { ok: true };
      },
    ],
    ['GET', new RegExp(`^/control/accounts/${A}/app-state$`), ([a]) => control.appStateMutations(a!)],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/profile-picture$`),
      ([a]) => {
        control.setProfilePicture(a!);
        return { ok: true };
      },
    ],
    [
      'POST',
      new RegExp(`^/control/accounts/${A}/unban$`),
      ([a]) => {
        control.unban(a!);
        return { ok: true };
      },
    ],
    [
      'POST',
      /^\/control\/groups$/,
      (_p, b) => control.createGroup(str(b, 'owner'), str(b, 'subject'), strings(b, 'participants')),
    ],
    ['GET', new RegExp(`^/control/groups/${A}$`), ([g]) => control.group(g!)],
    [
      'POST',
      new RegExp(`^/control/groups/${A}/participants$`),
      ([g], b) => {
        const action = str(b, 'action');
        if (!['add', 'remove', 'promote', 'demote'].includes(action))
          throw new SandboxError(400, 'action: add, remove, promote or demote');
        return control.groupParticipantsUpdate(
          g!,
          str(b, 'actor'),
          action as ParticipantAction,
          strings(b, 'participants'),
        );
      },
    ],
    [
      'POST',
      new RegExp(`^/control/groups/${A}$`),
      ([g], b) =>
        control.groupUpdate(g!, str(b, 'actor'), {
          subject: typeof b.subject === 'string' ? b.subject : undefined,
          description: typeof b.description === 'string' ? b.description : undefined,
          announce: optionalBool(b, 'announce'),
          restrict: optionalBool(b, 'restrict'),
        }),
    ],
    [
      'POST',
      new RegExp(`^/control/devices/${A}/kick$`),
      ([d], b) => {
        const reason = typeof b.reason === 'number' ? b.reason : (str(b, 'reason') as KickReason);
        return { online: control.kick(d!, reason) };
      },
    ],
    ['GET', new RegExp(`^/control/devices/${A}/log$`), ([d]) => control.log(d!)],
    ['GET', /^\/control\/faults$/, () => control.allFaults()],
    ['GET', new RegExp(`^/control/devices/${A}/faults$`), ([d]) => control.faults(d!)],
    [
      'POST',
      new RegExp(`^/control/devices/${A}/faults$`),
      ([d], b) => {
        const kind = faultKind(b.kind);
        const options = faultOptions(b);
        if (kind === 'mute') return control.muteDevice(d!, options);
        if (kind === 'dropPings') return control.dropPings(d!, options);
        return control.corruptSessions(d!, options);
      },
    ],
    [
      'DELETE',
      new RegExp(`^/control/devices/${A}/faults$`),
      ([d], _b, q) => control.liftFault(d!, q.get('kind') === null ? undefined : faultKind(q.get('kind'))),
    ],
  ];
}

function faultKind(value: unknown): FaultKind {
  if (typeof value === 'string' && (FAULT_KINDS as readonly string[]).includes(value))
    return value as FaultKind;
  throw new SandboxError(400, `kind must be one of ${FAULT_KINDS.join(', ')}`);
}

function faultOptions(body: Body): FaultOptions {
  const untilReconnect = optionalBool(body, 'untilReconnect');
  const messages = body.messages;
  if (messages !== undefined && typeof messages !== 'number')
    throw new SandboxError(400, 'body.messages must be a positive integer');
  return {
    ...(untilReconnect !== undefined ? { untilReconnect } : {}),
    ...(typeof messages === 'number' ? { messages } : {}),
  };
}

/** The shell lines that point the gateway (`npm start`) at this sandbox. */
export function envFor(urls: Urls): Record<string, string> {
  return { WA_WEBSOCKET_URL: urls.wsUrl, WA_NOISE_ROOT_PUBLIC_KEY: urls.rootPublicKeyBase64 };
}

export function createControlHandler(control: SandboxControl, urls: () => Urls) {
  const table = routes(control, urls);
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const send = (status: number, payload: unknown): void => {
      const body = JSON.stringify(payload ?? null);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    };
    try {
      const route = table.find(([method, pattern]) => method === req.method && pattern.test(url.pathname));
      if (!route) {
        send(404, { error: `no route ${req.method} ${url.pathname}` });
        return;
      }
      const params = route[1].exec(url.pathname)!.slice(1).map(decodeURIComponent);
      const body = req.method === 'POST' ? await readJson(req) : {};
      send(200, await route[2](params, body, url.searchParams));
    } catch (err) {
      if (err instanceof SandboxError) send(err.status, { error: err.message });
      else send(500, { error: String(err) });
    }
  };
}

async function readJson(req: IncomingMessage): Promise<Body> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new SandboxError(413, 'body too large');
    chunks.push(chunk as Buffer);
  }
  if (!size) return {};
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Body;
  } catch {
    throw new SandboxError(400, 'body must be a JSON object');
  }
}
