/**
 * The baseline of the send bench, in its own process: one bare Baileys socket (in-memory auth) linked to a
 * sandbox phone, sending texts with `sendMessage` and nothing else (no log, no outbox).
 *
 *   node --import tsx bench/send/bare.ts <wsUrl> <rootKeyBase64> <sandboxControlUrl> <phone>
 *
 * Prints `READY` once open, then answers one JSON line per command line on stdin:
 *   {"op":"latency","to":JID,"n":N,"prefix":P}             → {"ms":[…]} (sendMessage call → resolved, one at a time)
 *   {"op":"throughput","to":JID,"n":N,"window":W,"prefix":P} → {"elapsedMs":…} (N sends, W in flight)
 */
import { createInterface } from 'node:readline';
import pino from 'pino';
import makeWASocket from '@whiskeysockets/baileys';
import { silenceLibsignalConsole } from '../../src/whatsapp/baileys/quiet.ts';
import { trustNoiseRoot } from '../../src/whatsapp/baileys/server.ts';
import { memoryAuth } from '../support/memory-auth.ts';

const [wsUrl, rootKey, controlUrl, phone] = process.argv.slice(2);

type Sock = ReturnType<typeof makeWASocket>;

function open(
  auth: ReturnType<typeof memoryAuth>,
  onQr?: (qr: string) => void,
): { sock: Sock; outcome: Promise<'open' | number> } {
  const sock = makeWASocket({
    auth,
    logger: pino({ level: 'silent' }),
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

async function pair(): Promise<Sock> {
  const auth = memoryAuth();
  let scanned = false;
  const first = open(auth, (qr) => {
    if (scanned) return;
    scanned = true;
    void fetch(`${controlUrl}/control/accounts/${phone}/scan-qr`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ qr }),
    });
  });
  const code = await first.outcome;
  if (code !== 515) throw new Error(`pairing ended with ${code}, not 515`);
  const second = open(auth);
  if ((await second.outcome) !== 'open') throw new Error('login after pairing failed');
  return second.sock;
}

interface Command {
  readonly op: 'latency' | 'throughput';
  readonly to: string;
  readonly n: number;
  readonly window?: number;
  readonly prefix: string;
}

async function main(): Promise<void> {
  silenceLibsignalConsole();
  trustNoiseRoot(Buffer.from(rootKey!, 'base64'));
  const sock = await pair();
  process.stdout.write('READY\n');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = JSON.parse(line) as Command;
    if (command.op === 'latency') {
      const ms: number[] = [];
      for (let i = 0; i < command.n; i++) {
        const started = performance.now();
        await sock.sendMessage(command.to, { text: `${command.prefix}${i}` });
        ms.push(performance.now() - started);
      }
      process.stdout.write(`${JSON.stringify({ ms })}\n`);
    } else {
      let next = 0;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: command.window ?? 32 }, async () => {
          while (next < command.n) await sock.sendMessage(command.to, { text: `${command.prefix}${next++}` });
        }),
      );
      process.stdout.write(`${JSON.stringify({ elapsedMs: performance.now() - started })}\n`);
    }
  }
  sock.end(undefined);
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
