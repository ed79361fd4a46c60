/**
 * Finding 11: the process's failure policy (installProcessPolicy in src/process.ts), on a real child process.
 * A promise rejected in one instance's connection that nobody awaits is logged and everything keeps
 * serving (before, Node's default ended the process: every tenant down). An uncaught exception is logged
 * as fatal and the process stops cleanly with exit code 1: live instances record their `shutdown` close,
 * so the next start restores them.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { instanceStream } from '../../../src/domain/events.ts';
import { databaseUrlForDataDir, dropDatabaseOfDataDir } from '../../support/postgres.ts';
import { ADMIN_KEY, eventually, startTestApp } from '../../support/zapwire.ts';

const CHILD = join(import.meta.dirname, '../../support/policy-child.ts');
const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-policy-'));
let child: ChildProcessWithoutNullStreams | undefined;

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await dropDatabaseOfDataDir(dataDir);
  rmSync(dataDir, { recursive: true, force: true });
});

interface LogLine {
  level: number;
  msg: string;
  url?: string;
  err?: { message?: string };
}

describe('process failure policy', () => {
  it('survives an unhandled rejection in one instance; stops cleanly with 1 on an uncaught exception', async () => {
    const databaseUrl = await databaseUrlForDataDir(dataDir);
    child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, databaseUrl], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: LogLine[] = [];
    let stderr = '';
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const part of parts) if (part.trim()) lines.push(JSON.parse(part) as LogLine);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));

    const url = (
      await eventually(() => lines.find((l) => l.msg.startsWith('zapwire listening')), 60_000).catch(
        (error: unknown) => {
          throw new Error(`${String(error)}\n${stderr}`);
        },
      )
    ).url!;
    const call = async (method: string, path: string, apikey: string, body?: unknown) => {
      const r = await fetch(`${url}${path}`, {
        method,
        headers: { apikey, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const a = (await call('POST', '/instance/create', ADMIN_KEY, { name: 'policy-a' })).body as {
      id: string;
      token: string;
    };
    const b = (await call('POST', '/instance/create', ADMIN_KEY, { name: 'policy-b' })).body as {
      id: string;
      token: string;
    };

    // A's connection leaves a rejected promise behind.
    expect((await call('POST', '/instance/connect', a.token, {})).status).toBe(200);
    await eventually(() => lines.some((l) => l.msg === 'unhandled promise rejection; kept running'));
    const logged = lines.find((l) => l.msg === 'unhandled promise rejection; kept running')!;
    expect(logged.level).toBe(50);
    expect(logged.err?.message).toContain(a.id);
    // The process, A and B all keep working.
    expect(child.exitCode).toBeNull();
    expect((await call('POST', '/instance/connect', b.token, {})).status).toBe(200);
    expect((await call('GET', '/instance/status', b.token)).body['state']).toBe('connecting');
    expect((await call('GET', '/instance/status', a.token)).body['state']).toBe('connecting');

    // An uncaught exception: logged as fatal, a clean stop, exit code 1.
    child.stdin.write('throw\n');
    expect(await exited).toBe(1);
    const fatal = lines.find((l) => l.msg === 'uncaught exception; shutting down');
    expect(fatal?.level).toBe(60);
    expect(fatal?.err?.message).toBe('simulated uncaught exception');

    // Clean: both live instances recorded their shutdown close, so the next start restores them.
    const t = await startTestApp({ dataDir });
    try {
      for (const i of [a, b]) {
        const events = await t.zapwire.store.readStream(instanceStream(i.id));
        const closes = events.filter((e) => e.type === 'ConnectionClosed');
        expect(closes.map((e) => (e.data as { reason?: string }).reason)).toContain('shutdown');
      }
    } finally {
      await t.stop();
    }
  }, 120_000);
});
