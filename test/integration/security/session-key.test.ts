/**
 * Finding 6: a changed SESSION_ENCRYPTION_KEY is refused at start with a one-line reason (it used to go
 * unnoticed while every webhook and session failed); the old key as SESSION_ENCRYPTION_KEY_PREVIOUS
 * rotates: secrets and session creds are sealed again under the new key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceSecrets, SecretBox } from '../../../src/runtime/secrets.ts';
import { AuthStateSealer, rowAad } from '../../../src/whatsapp/baileys/sealing.ts';
import { createTestDatabase, type TestDatabase } from '../../support/postgres.ts';
import { startTestApp } from '../../support/zapwire.ts';

const keyA = randomBytes(32);
const keyB = randomBytes(32);
let database: TestDatabase;
let dataDir: string;

beforeAll(async () => {
  database = await createTestDatabase();
  dataDir = mkdtempSync(join(tmpdir(), 'zapwire-key-'));
});
afterAll(async () => {
  await database?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

const start = (key: Buffer, previous?: Buffer) =>
  startTestApp({
    dataDir,
    env: {
      DATABASE_URL: database.url,
      SESSION_ENCRYPTION_KEY: key.toString('hex'),
      ...(previous ? { SESSION_ENCRYPTION_KEY_PREVIOUS: previous.toString('hex') } : {}),
    },
  });

describe('SESSION_ENCRYPTION_KEY', () => {
  it('refuses another key, rotates with the previous one given, and then refuses the old one', async () => {
    const first = await start(keyA);
    const created = await first.request<{ id: string; webhookSecret: string }>('POST', '/instance/create', {
      body: { name: 'sealed' },
    });
    expect(created.status).toBe(201);
    const { id, webhookSecret } = created.body;
    // A paired session's creds, sealed under key A as the Baileys adapter does.
    const credsAad = rowAad(id, 'creds', 'creds');
    await first.zapwire.db.query(
      `INSERT INTO wa_auth_state (instance_id, category, key_ref, sealed) VALUES ($1, 'creds', 'creds', $2)`,
      [id, new AuthStateSealer(keyA).seal(Buffer.from('{"me":"creds"}'), credsAad)],
    );
    await first.zapwire.stop();

    const refused = await start(keyB).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(refused?.name).toBe('SessionKeyMismatchError');
    expect(refused?.message).toMatch(/SESSION_ENCRYPTION_KEY_PREVIOUS/);
    expect(refused?.message).not.toContain('\n');

    const rotated = await start(keyB, keyA);
    const secrets = new InstanceSecrets(rotated.zapwire.db, new SecretBox(keyB));
    expect(await secrets.get(id, 'webhook_secret')).toBe(webhookSecret);
    const { rows } = await rotated.zapwire.db.query<{ sealed: Buffer }>(
      `SELECT sealed FROM wa_auth_state WHERE instance_id = $1 AND category = 'creds'`,
      [id],
    );
    expect(new AuthStateSealer(keyB).open(Buffer.from(rows[0]!.sealed), credsAad).toString()).toBe(
      '{"me":"creds"}',
    );
    await rotated.zapwire.stop();

    const again = await start(keyB);
    expect((await again.request('GET', '/health', { apikey: null })).status).toBe(200);
    await again.zapwire.stop();

    const old = await start(keyA).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(old?.name).toBe('SessionKeyMismatchError');
  });

  it('refuses a key that does not open a database sealed before the check value existed', async () => {
    const db = await createTestDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'zapwire-key-'));
    const env = (key: Buffer) => ({ DATABASE_URL: db.url, SESSION_ENCRYPTION_KEY: key.toString('hex') });
    try {
      const app = await startTestApp({ dataDir: dir, env: env(keyA) });
      await app.request('POST', '/instance/create', { body: { name: 'legacy' } });
      await app.zapwire.db.query('DELETE FROM zw_key_check');
      await app.zapwire.stop();
      const refused = await startTestApp({ dataDir: dir, env: env(keyB) }).then(
        () => undefined,
        (error: unknown) => error as Error,
      );
      expect(refused?.message).toMatch(/does not open the secrets/);
      const accepted = await startTestApp({ dataDir: dir, env: env(keyA) });
      await accepted.zapwire.stop();
    } finally {
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
