/**
 * The baseline of the e2e bench, in its own process: bare Baileys sockets (in-memory auth) against the same
 * sandbox, each POSTing every incoming `messages.upsert` message to the bench's receiver itself, one
 * request per message as it arrives (keep-alive, no queue, no store): the floor a gateway is measured
 * against.
 *
 *   node --import tsx bench/e2e/bare.ts <wsUrl> <rootKeyBase64> <sandboxControlUrl> <receiverUrl> <phone>…
 *
 * Pairs one socket per phone (QR scanned through the sandbox control API), prints `READY` once every
 * socket is open, and runs until stdin closes.
 */
import pino from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import makeWASocket, { type AuthenticationState } from '@whiskeysockets/baileys';
import { silenceLibsignalConsole } from '../../src/whatsapp/baileys/quiet.ts';
import { trustNoiseRoot } from '../../src/whatsapp/baileys/server.ts';
import { memoryAuth } from '../support/memory-auth.ts';

const [wsUrl, rootKey, controlUrl, receiverUrl, ...phones] = process.argv.slice(2);
const silent = pino({ level: 'silent' });
/**
 * Keep-alive connections to the receiver, at most 64 (as zapwire's webhook sends at most 64 requests at
 * once): fetch's global pool opens a new connection whenever every one is busy, and over a 30 s saturated
 * phase that ran the receiver out of file descriptors.
 */
const receiverPool = new Agent({ connections: 64 });

type Sock = ReturnType<typeof makeWASocket>;

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
    connectTimeoutMs: 60_000,
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

function forward(sock: Sock): void {
  sock.ev.on('messages.upsert', ({ messages, type }) => {
    if (type !== 'notify') return;
    for (const message of messages) {
      if (message.key.fromMe) continue;
      const text = message.message?.conversation ?? message.message?.extendedTextMessage?.text ?? null;
      void undiciFetch(receiverUrl!, {
        dispatcher: receiverPool,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: message.key.id, chat: message.key.remoteJid, text }),
      })
        .then((response) => response.arrayBuffer())
        .catch((error: unknown) => process.stderr.write(`POST failed: ${String(error)}\n`));
    }
  });
}

async function pair(phone: string): Promise<Sock> {
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
  return second.sock;
}

async function main(): Promise<void> {
  silenceLibsignalConsole();
  trustNoiseRoot(Buffer.from(rootKey!, 'base64'));
  const sockets: Sock[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(8, phones.length) }, async () => {
      while (next < phones.length) sockets.push(await pair(phones[next++]!));
    }),
  );
  process.stdout.write('READY\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    for (const sock of sockets) sock.end(undefined);
    process.exit(0);
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
