/**
 * The baseline of the scale bench, in its own process: bare Baileys sockets (in-memory auth) against the
 * same sandbox, each POSTing every incoming message to the bench's receiver itself (as bench/e2e/bare.ts).
 *
 *   node --import tsx bench/scale/bare.ts <wsUrl> <rootKeyBase64> <sandboxControlUrl> <receiverUrl>
 *
 * Driven by one command a line on stdin, each answered by one JSON line on stdout:
 *   {"pair":[phone, …]}  pairs one socket per phone (8 at a time)        → {"paired":n}
 *   {"restart":true}     ends every socket, then opens them all at once  → {"restartMs":ms,"failedLogins":n}
 *   {"gc":true}          a full garbage collection (--expose-gc)         → {"gc":true}
 *   {"loop":true}        event-loop delay since the last {"loop"} (ms)   → {"p99":ms,"max":ms}
 * and exits when stdin closes.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import makeWASocket, { type AuthenticationState } from '@whiskeysockets/baileys';
import { silenceLibsignalConsole } from '../../src/whatsapp/baileys/quiet.ts';
import { trustNoiseRoot } from '../../src/whatsapp/baileys/server.ts';
import { memoryAuth } from '../support/memory-auth.ts';

const [wsUrl, rootKey, controlUrl, receiverUrl] = process.argv.slice(2);
const silent = pino({ level: 'silent' });
const receiverPool = new Agent({ connections: 64 });
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();

type Sock = ReturnType<typeof makeWASocket>;
interface Paired {
  readonly auth: AuthenticationState;
  sock: Sock;
}

function socket(
  auth: AuthenticationState,
  onQr?: (qr: string) => void,
): { sock: Sock; outcome: Promise<'open' | number> } {
  const sock = makeWASocket({
    auth,
    logger: silent,
    waWebSocketUrl: wsUrl,
    markOnlineOnConnect: false,
    syncFullHistory: false,
    getMessage: async () => undefined,
    connectTimeoutMs: 120_000,
  });
  const outcome = new Promise<'open' | number>((resolve) => {
    sock.ev.on('connection.update', (update) => {
      if (update.qr && onQr) onQr(update.qr);
      if (update.connection === 'open') resolve('open');
      if (update.connection === 'close') {
        const error = update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined;
        resolve(error?.output?.statusCode ?? -1);
      }
    });
  });
  return { sock, outcome };
}

async function scan(phone: string, qr: string): Promise<void> {
  const response = await fetch(`${controlUrl}/control/accounts/${phone}/scan-qr`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ qr }),
  });
  if (!response.ok) throw new Error(`scan ${phone}: ${response.status} ${await response.text()}`);
}

/** POSTs to the receiver, trying again twice (a busy receiver may reset a kept-alive connection). */
async function post(body: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await undiciFetch(receiverUrl!, {
        dispatcher: receiverPool,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      await response.arrayBuffer();
      return;
    } catch (error) {
      if (attempt >= 3) {
        process.stderr.write(`POST failed: ${String(error)}\n`);
        return;
      }
    }
  }
}

function forward(sock: Sock): void {
  sock.ev.on('messages.upsert', ({ messages, type }) => {
    if (type !== 'notify') return;
    for (const message of messages) {
      if (message.key.fromMe) continue;
      const text = message.message?.conversation ?? message.message?.extendedTextMessage?.text ?? null;
      void post(JSON.stringify({ id: message.key.id, chat: message.key.remoteJid, text }));
    }
  });
}

async function pair(phone: string): Promise<Paired> {
  const auth = memoryAuth();
  let scanned = false;
  const first = socket(auth, (qr) => {
    if (scanned) return;
    scanned = true;
    scan(phone, qr).catch((error: unknown) => process.stderr.write(`${String(error)}\n`));
  });
  const code = await first.outcome;
  if (code !== 515) throw new Error(`pairing ${phone} ended with ${code}, not 515`);
  const second = socket(auth);
  forward(second.sock);
  const result = await second.outcome;
  if (result !== 'open') throw new Error(`login of ${phone} after pairing ended with ${result}`);
  return { auth, sock: second.sock };
}

const paired: Paired[] = [];

async function pairAll(phones: readonly string[]): Promise<number> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(8, phones.length) }, async () => {
      while (next < phones.length) paired.push(await pair(phones[next++]!));
    }),
  );
  return paired.length;
}

/** Every socket down, then every one logging in again at once: what a restart without pacing does. */
/**
 * Every socket down, then every one logging in again at once: what a restart without pacing does. A
 * login that fails (the storm times it out) is tried again after 1 s, as an application's reconnect
 * would, up to 20 times; the failures are counted.
 */
async function restartAll(): Promise<{ restartMs: number; failedLogins: number }> {
  for (const entry of paired) entry.sock.end(undefined);
  const t0 = performance.now();
  let failedLogins = 0;
  await Promise.all(
    paired.map(async (entry) => {
      for (let attempt = 1; ; attempt++) {
        const next = socket(entry.auth);
        forward(next.sock);
        const result = await next.outcome;
        if (result === 'open') {
          entry.sock = next.sock;
          return;
        }
        failedLogins += 1;
        next.sock.end(undefined);
        if (attempt >= 20) throw new Error(`re-login still failing after 20 attempts (${result})`);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }),
  );
  return { restartMs: performance.now() - t0, failedLogins };
}

async function handle(command: Record<string, unknown>): Promise<unknown> {
  if (Array.isArray(command['pair'])) return { paired: await pairAll(command['pair'] as string[]) };
  if (command['restart']) return await restartAll();
  if (command['gc']) {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('run with --expose-gc');
    gc();
    gc();
    return { gc: true };
  }
  if (command['loop']) {
    const out = { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
    loop.reset();
    return out;
  }
  throw new Error(`unknown command ${JSON.stringify(command)}`);
}

silenceLibsignalConsole();
trustNoiseRoot(Buffer.from(rootKey!, 'base64'));
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    try {
      process.stdout.write(`${JSON.stringify(await handle(JSON.parse(line) as Record<string, unknown>))}\n`);
    } catch (error) {
      process.stdout.write(
        `${JSON.stringify({ error: error instanceof Error ? error.message : String(error) })}\n`,
      );
    }
  });
});
lines.on('close', () => {
  for (const entry of paired) entry.sock.end(undefined);
  process.exit(0);
});
