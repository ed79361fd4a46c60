/**
 * The replay CLI: opens the store the way the app does (here DATABASE_URL, the app stopped) and
 * prints the same history and state-at-a-moment as the HTTP route.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReplay } from '../../../src/cli/replay.ts';
import { eventually, startTestApp } from '../../support/zapwire.ts';
import { databaseUrlForDataDir, dropDatabaseOfDataDir } from '../../support/postgres.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'zapwire-replay-cli-'));
let id = '';
let openedAt = '';
const env: Record<string, string> = { DATA_DIR: dataDir, LOG_LEVEL: 'silent' };

beforeAll(async () => {
  const t = await startTestApp({ dataDir });
  const created = await t.request('POST', '/instance/create', { body: { name: 'cli-audit' } });
  id = created.body['id'] as string;
  await t.request('POST', '/instance/connect', { body: { instanceName: 'cli-audit' } });
  const connection = await eventually(() => t.fake.connection(id));
  connection.issueQr();
  connection.scan();
  await eventually(
    async () => (await t.request('GET', '/instance/status?instanceName=cli-audit')).body['state'] === 'open',
  );
  openedAt = new Date().toISOString();
  await t.request('POST', '/instance/disconnect', { body: { instanceName: 'cli-audit' } });
  await t.stop();
  env['DATABASE_URL'] = await databaseUrlForDataDir(dataDir);
});
afterAll(async () => {
  await dropDatabaseOfDataDir(dataDir);
  rmSync(dataDir, { recursive: true, force: true });
});

function capture(): { out: string[]; err: string[]; io: { out(t: string): void; err(t: string): void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (text) => out.push(text), err: (text) => err.push(text) } };
}

describe('npm run replay', () => {
  it('prints the history as a table (as a separate process, like npm run replay)', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/replay.ts', 'cli-audit'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toBe(`cli-audit (${id}): 5 events, now disconnected`);
    expect(lines[1]).toMatch(/^#\s+time\s+event\s+state\s+machine state\s+detail$/);
    const rows = lines.slice(3).map((l) => l.split(/\s{2,}/));
    expect(rows.map((r) => [r[2], r[3], r[4]])).toEqual([
      ['InstanceCreated', 'created', 'created'],
      ['ConnectionStarting', 'connecting', 'session.connecting'],
      ['QrCodeIssued', 'qr', 'session.qr'],
      ['InstanceOpened', 'open', 'session.open'],
      ['ConnectionClosed', 'disconnected', 'disconnected'],
    ]);
    expect(lines.at(-1)).toMatch(/reason=user_disconnect/);
  });

  it('--at prints the state and context at that moment; --json the same as the API', async () => {
    const c = capture();
    expect(await runReplay([id, '--at', openedAt], env, c.io)).toBe(0);
    expect(c.out.join('\n')).toMatch(/state: open \(machine: session\.open\) after event #4 InstanceOpened/);
    expect(c.out.join('\n')).toMatch(/ {2}paired: true/);
    const j = capture();
    expect(await runReplay(['cli-audit', '--at', openedAt, '--json'], env, j.io)).toBe(0);
    expect(JSON.parse(j.out.join('\n'))).toMatchObject({
      state: 'open',
      version: 4,
      context: { paired: true },
    });
  });

  it('pages, and says what is wrong with bad input', async () => {
    const p = capture();
    expect(await runReplay(['cli-audit', '--from', '2', '--limit', '2', '--json'], env, p.io)).toBe(0);
    const page = JSON.parse(p.out.join('\n')) as { entries: Array<{ version: number }>; next: number };
    expect(page.entries.map((e) => e.version)).toEqual([2, 3]);
    expect(page.next).toBe(4);
    const missing = capture();
    expect(await runReplay(['nobody'], env, missing.io)).toBe(1);
    expect(missing.err[0]).toMatch(/not found/);
    const early = capture();
    expect(await runReplay(['cli-audit', '--at', '2001-01-01T00:00:00Z'], env, early.io)).toBe(1);
    expect(early.err[0]).toMatch(/did not exist yet/);
    const bad = capture();
    expect(await runReplay(['cli-audit', '--at', 'soon'], env, bad.io)).toBe(64);
    const none = capture();
    expect(await runReplay([], env, none.io)).toBe(64);
    expect(none.err[0]).toMatch(/^usage: npm run replay/);
  });
});
