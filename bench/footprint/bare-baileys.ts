/**
 * The floor for the footprint bench: bare Baileys sockets with in-memory auth in a process of their own
 * (started by ./index.ts with `node --import tsx` and an IPC channel), so that its RSS can be read from
 * /proc exactly as the server's is. The same configuration as the instances bench's `baileys` variant.
 *
 * Protocol (IPC messages): the child sends `ready` once Baileys is loaded; the parent sends
 * `{ type: 'pair', phones, concurrency }`; the child asks the parent to scan each QR
 * (`{ type: 'scan', phone, qr }`: the sandbox runs in the parent) and answers `{ type: 'paired' }` when
 * every socket is open; `{ type: 'exit' }` closes the sockets and ends the process. The child also ends
 * when the parent goes away.
 */
import pino from 'pino';
import makeWASocket, { type AuthenticationState } from '@whiskeysockets/baileys';
import { memoryAuth } from '../support/memory-auth.ts';
import { silenceLibsignalConsole } from '../../src/whatsapp/baileys/quiet.ts';
import { trustNoiseRoot } from '../../src/whatsapp/baileys/server.ts';

export type ToBareBaileys =
  | { readonly type: 'pair'; readonly phones: readonly string[]; readonly concurrency: number }
  | { readonly type: 'exit' };

export type FromBareBaileys =
  | { readonly type: 'ready' }
  | { readonly type: 'scan'; readonly phone: string; readonly qr: string }
  | { readonly type: 'paired'; readonly seconds: number }
  | { readonly type: 'error'; readonly message: string };

type Sock = ReturnType<typeof makeWASocket>;

const [wsUrl, rootKey] = process.argv.slice(2);
const silent = pino({ level: 'silent' });
const sockets: Sock[] = [];

function send(message: FromBareBaileys): void {
  process.send?.(message);
}

function socket(
  auth: AuthenticationState,
  onQr?: (qr: string) => void,
): Promise<{ sock: Sock; outcome: 'open' | number }> {
  const sock = makeWASocket({
    auth,
    logger: silent,
    waWebSocketUrl: wsUrl,
    markOnlineOnConnect: false,
    emitOwnEvents: false,
    syncFullHistory: false,
    getMessage: async () => undefined,
    connectTimeoutMs: 60_000,
  });
  return new Promise((resolve) => {
    sock.ev.on('connection.update', (update) => {
      if (update.qr && onQr) onQr(update.qr);
      if (update.connection === 'open') resolve({ sock, outcome: 'open' });
      if (update.connection === 'close') {
        const error = update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined;
        resolve({ sock, outcome: error?.output?.statusCode ?? -1 });
      }
    });
  });
}

/** QR, scan, the 515 restart WhatsApp asks for after pairing, then the logged-in socket. */
async function pair(phone: string): Promise<void> {
  const auth = memoryAuth();
  let scanned = false;
  const first = await socket(auth, (qr) => {
    if (scanned) return;
    scanned = true;
    send({ type: 'scan', phone, qr });
  });
  if (first.outcome !== 515) throw new Error(`pairing ${phone} ended with ${first.outcome}, not 515`);
  const second = await socket(auth);
  if (second.outcome !== 'open')
    throw new Error(`login of ${phone} after pairing ended with ${second.outcome}`);
  sockets.push(second.sock);
}

async function pairAll(phones: readonly string[], concurrency: number): Promise<void> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, phones.length) }, async () => {
      while (next < phones.length) await pair(phones[next++]!);
    }),
  );
  send({ type: 'paired', seconds: (performance.now() - t0) / 1000 });
}

function fail(error: unknown): never {
  send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exit(1);
}

silenceLibsignalConsole();
trustNoiseRoot(Buffer.from(rootKey!, 'base64'));
process.on('disconnect', () => process.exit(0));
process.on('message', (message: ToBareBaileys) => {
  if (message.type === 'pair') pairAll(message.phones, message.concurrency).catch(fail);
  else if (message.type === 'exit') {
    for (const sock of sockets) sock.end(undefined);
    setTimeout(() => process.exit(0), 200).unref();
    process.disconnect();
  }
});
send({ type: 'ready' });
