/**
 * SIGTERM with a webhook request in flight, on the real process (src/main.ts under tsx): the receiver
 * never answers and WEBHOOK_TIMEOUT_MS is a minute, yet the process exits cleanly within seconds (before,
 * it waited for the request until the 15 s forced exit). The delivery stays pending and goes out, with the
 * same event id, after the next start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrlForDataDir, dropDatabaseOfDataDir } from '../../support/postgres.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';

const ADMIN = 'shutdown-admin-key-0123456789abcdef';
const children: ChildProcess[] = [];
let dataDir = '';
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (dataDir) await dropDatabaseOfDataDir(dataDir);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function start(env: Record<string, string>): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: process.cwd(),
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited };
}

async function waitHealthy(port: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('zapwire did not become healthy');
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('SIGTERM with a webhook request in flight', () => {
  it('exits within seconds and delivers the event after the next start', async () => {
    const receiver = await WebhookReceiver.start();
    try {
      receiver.respond({ status: 200, delayMs: 120_000 });
      dataDir = mkdtempSync(join(tmpdir(), 'zapwire-shutdown-'));
      const port = await freePort();
      const env = {
        GLOBAL_API_KEY: ADMIN,
        DATA_DIR: dataDir,
        DATABASE_URL: await databaseUrlForDataDir(dataDir),
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        WEBHOOK_TIMEOUT_MS: '60000',
      };
      const first = start(env);
      await waitHealthy(port);
      const api = (path: string, body: unknown, apikey = ADMIN): Promise<Response> =>
        fetch(`http://127.0.0.1:${port}${path}`, {
          method: 'POST',
          headers: { apikey, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const token = 'shutdown-instance-token-abcdef';
      const created = await api('/instance/create', {
        name: 'slowhook',
        token,
        webhookUrl: receiver.url(),
        events: ['CONNECTION_UPDATE'],
      });
      expect(created.status).toBe(201);
      // Connecting records ConnectionStarting: a CONNECTION_UPDATE for the (never answering) webhook.
      expect((await api('/instance/connect', {}, token)).status).toBe(200);
      await receiver.waitUntil(() => receiver.requests.length >= 1, 30_000, 'the webhook request in flight');
      const eventId = receiver.requests[0]!.headers['x-zapwire-event-id'];

      const began = Date.now();
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);
      expect(Date.now() - began).toBeLessThan(8_000);

      receiver.respond({ status: 200 });
      const second = start(env);
      await waitHealthy(port);
      await receiver.waitUntil(
        () => receiver.requests.slice(1).some((r) => r.headers['x-zapwire-event-id'] === eventId),
        30_000,
        'the pending delivery after the restart',
      );
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    } finally {
      await receiver.close();
    }
  }, 150_000);
});
