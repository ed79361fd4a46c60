/**
 * One client process of the sandbox bench: raw Baileys sockets for a slice of the accounts, driven by
 * the orchestrator (bench/sandbox/index.ts) over IPC. Each command answers with one message.
 */
import makeWASocket, { Browsers, WA_CERT_DETAILS, type WASocket } from '@whiskeysockets/baileys';
import { memoryAuth, type MemoryAuth } from '../../packages/sandbox/test/support/baileys-auth.ts';
import { quietLibsignal } from '@zapwire/sandbox/quiet';

export interface WorkerConfig {
  readonly wsUrl: string;
  readonly controlUrl: string;
  readonly rootPublicKeyBase64: string;
  readonly accounts: string[];
  readonly concurrency: number;
}

export type WorkerCommand =
  | { readonly cmd: 'pair' }
  | { readonly cmd: 'expect'; readonly ids: string[] }
  /** Each device (or only the next `count` devices, round robin) sends one text. */
  | { readonly cmd: 'send'; readonly to: string; readonly count?: number }
  | { readonly cmd: 'reconnect' }
  | { readonly cmd: 'stop' };

export type WorkerReply =
  | { readonly cmd: 'pair'; readonly pairMs: number[]; readonly failures: string[] }
  | { readonly cmd: 'expect'; readonly receivedAt: Record<string, number>; readonly missing: number }
  | { readonly cmd: 'send'; readonly sentAt: Record<string, number>; readonly failures: number }
  | {
      readonly cmd: 'reconnect';
      readonly closeCodes: Record<string, number>;
      readonly openMs: number[];
      readonly failures: string[];
    }
  | { readonly cmd: 'stop' };

const config = JSON.parse(process.env.BENCH_WORKER_CONFIG ?? '{}') as WorkerConfig;
quietLibsignal();
(WA_CERT_DETAILS as { PUBLIC_KEY: Buffer }).PUBLIC_KEY = Buffer.from(config.rootPublicKeyBase64, 'base64');

const silent = {
  level: 'silent',
  child: () => silent,
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
};

interface Device {
  readonly account: string;
  readonly auth: MemoryAuth;
  sock: WASocket;
  closeCode: Promise<number | undefined>;
  readonly received: Map<string, number>;
}

const devices: Device[] = [];
const received = new Map<string, number>();

function open(auth: MemoryAuth): {
  sock: WASocket;
  opened: Promise<void>;
  qr: Promise<string>;
  closeCode: Promise<number | undefined>;
} {
  const sock = makeWASocket({
    waWebSocketUrl: config.wsUrl,
    auth: auth.state,
    logger: silent,
    browser: Browsers.macOS('Chrome'),
    markOnlineOnConnect: false,
    connectTimeoutMs: 60_000,
    defaultQueryTimeoutMs: 60_000,
  });
  let resolveOpened!: () => void;
  let rejectOpened!: (e: Error) => void;
  let resolveQr!: (qr: string) => void;
  let resolveClose!: (code: number | undefined) => void;
  const opened = new Promise<void>((res, rej) => ((resolveOpened = res), (rejectOpened = rej)));
  const qr = new Promise<string>((res) => (resolveQr = res));
  const closeCode = new Promise<number | undefined>((res) => (resolveClose = res));
  opened.catch(() => undefined);
  sock.ev.process((events) => {
    if (events['creds.update']) Object.assign(auth.state.creds, events['creds.update']);
    const update = events['connection.update'];
    if (update?.qr) resolveQr(update.qr);
    if (update?.connection === 'open') resolveOpened();
    if (update?.connection === 'close') {
      const code = (update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)?.output
        ?.statusCode;
      rejectOpened(new Error(`closed with ${code}`));
      resolveClose(code);
    }
    for (const message of events['messages.upsert']?.messages ?? []) {
      if (message.key.id && !message.key.fromMe) received.set(message.key.id, Date.now());
    }
  });
  return { sock, opened, qr, closeCode };
}

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(size, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function post(path: string, body: unknown): Promise<void> {
  const res = await fetch(`${config.controlUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
}

async function pair(): Promise<WorkerReply> {
  const pairMs: number[] = [];
  const failures: string[] = [];
  await inBatches(config.accounts, config.concurrency, async (account) => {
    const started = performance.now();
    try {
      const auth = memoryAuth();
      const first = open(auth);
      await post(`/control/accounts/${account}/scan-qr`, { qr: await first.qr });
      const code = await first.closeCode;
      if (code !== 515) throw new Error(`pairing socket closed with ${code}`);
      const second = open(auth);
      await second.opened;
      devices.push({ account, auth, sock: second.sock, closeCode: second.closeCode, received: new Map() });
      pairMs.push(performance.now() - started);
    } catch (err) {
      failures.push(`${account}: ${String(err)}`);
    }
  });
  return { cmd: 'pair', pairMs, failures };
}

async function expectMessages(ids: string[], timeoutMs = 60_000): Promise<WorkerReply> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && ids.some((id) => !received.has(id)))
    await new Promise((r) => setTimeout(r, 20));
  const receivedAt: Record<string, number> = {};
  for (const id of ids) if (received.has(id)) receivedAt[id] = received.get(id)!;
  return { cmd: 'expect', receivedAt, missing: ids.length - Object.keys(receivedAt).length };
}

let nextSender = 0;

async function send(to: string, count?: number): Promise<WorkerReply> {
  const sentAt: Record<string, number> = {};
  let failures = 0;
  const senders =
    count === undefined
      ? devices
      : Array.from({ length: count }, () => devices[nextSender++ % devices.length]!);
  await inBatches(senders, config.concurrency, async (device) => {
    const at = Date.now();
    try {
      const message = await device.sock.sendMessage(to, { text: `bench from ${device.account}` });
      if (message?.key.id) sentAt[message.key.id] = at;
    } catch {
      failures++;
    }
  });
  return { cmd: 'send', sentAt, failures };
}

/** After the server closed every socket: record the codes, then log everyone back in. */
async function reconnect(): Promise<WorkerReply> {
  const closeCodes: Record<string, number> = {};
  for (const device of devices) {
    const code = String(await device.closeCode);
    closeCodes[code] = (closeCodes[code] ?? 0) + 1;
  }
  const openMs: number[] = [];
  const failures: string[] = [];
  await inBatches(devices, config.concurrency, async (device) => {
    const started = performance.now();
    try {
      const again = open(device.auth);
      await again.opened;
      device.sock = again.sock;
      device.closeCode = again.closeCode;
      openMs.push(performance.now() - started);
    } catch (err) {
      failures.push(`${device.account}: ${String(err)}`);
    }
  });
  return { cmd: 'reconnect', closeCodes, openMs, failures };
}

process.on('message', (command: WorkerCommand) => {
  void (async () => {
    let reply: WorkerReply;
    switch (command.cmd) {
      case 'pair':
        reply = await pair();
        break;
      case 'expect':
        reply = await expectMessages(command.ids);
        break;
      case 'send':
        reply = await send(command.to, command.count);
        break;
      case 'reconnect':
        reply = await reconnect();
        break;
      case 'stop':
        for (const device of devices) device.sock.end(undefined);
        process.send!({ cmd: 'stop' } satisfies WorkerReply);
        setTimeout(() => process.exit(0), 200);
        return;
    }
    process.send!(reply);
  })();
});
