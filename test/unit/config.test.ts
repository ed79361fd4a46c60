import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadOrCreateSecret } from '../../src/config.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
}

describe('configuration', () => {
  it('starts with no environment at all', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ port: 8080, host: '127.0.0.1', qrCodeMaxCount: 5, logLevel: 'info' });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.globalApiKey).toBeUndefined();
  });

  it.each([
    [{ PORT: 'eighty' }, /PORT="eighty": expected a whole number from 0 to 65535/],
    [{ PORT: '70000' }, /PORT/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL: expected a URL starting with postgres:\/\//],
    [{ AMQP_URL: 'not a url' }, /AMQP_URL/],
    [{ NATS_URL: 'http://x' }, /NATS_URL/],
    [{ GLOBAL_API_KEY: 'short' }, /GLOBAL_API_KEY: expected at least 16 characters/],
    [{ SESSION_ENCRYPTION_KEY: 'abcd' }, /SESSION_ENCRYPTION_KEY: expected 32 bytes/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL="loud": expected one of fatal, error/],
    [{ QRCODE_MAX_COUNT: '0' }, /QRCODE_MAX_COUNT/],
    [{ WA_WEBSOCKET_URL: 'ws://127.0.0.1:1' }, /WA_WEBSOCKET_URL and WA_NOISE_ROOT_PUBLIC_KEY go together/],
    [{ RECONNECT_BASE_MS: '5000', RECONNECT_MAX_MS: '1000' }, /RECONNECT_BASE_MS must not be larger/],
    [{ EMBEDDED_POSTGRES_RESTARTS: '-1' }, /EMBEDDED_POSTGRES_RESTARTS="-1": expected a whole number/],
  ])('rejects %o with a message naming the variable', (env, message) => {
    const problems = problemsOf(env);
    expect(problems.join('\n')).toMatch(message);
  });

  it('restarts the embedded PostgreSQL 5 times in ten minutes unless told otherwise', () => {
    expect(loadConfig({}).embeddedPostgresRestarts).toBe(5);
    expect(loadConfig({ EMBEDDED_POSTGRES_RESTARTS: '0' }).embeddedPostgresRestarts).toBe(0);
  });

  it('RESTORE_CONCURRENCY: auto unless a number fixes it; RESTORE_CONCURRENCY_MAX bounds auto', () => {
    expect(loadConfig({})).toMatchObject({ restoreConcurrency: 'auto', restoreConcurrencyMax: 32 });
    expect(loadConfig({ RESTORE_CONCURRENCY: 'AUTO' }).restoreConcurrency).toBe('auto');
    expect(loadConfig({ RESTORE_CONCURRENCY: '4', RESTORE_CONCURRENCY_MAX: '100' })).toMatchObject({
      restoreConcurrency: 4,
      restoreConcurrencyMax: 100,
    });
    expect(problemsOf({ RESTORE_CONCURRENCY: 'fast' }).join('\n')).toMatch(
      /RESTORE_CONCURRENCY="fast": expected auto or a whole number from 1 to 256/,
    );
    expect(problemsOf({ RESTORE_CONCURRENCY: '0' }).join('\n')).toMatch(/RESTORE_CONCURRENCY="0"/);
    expect(problemsOf({ RESTORE_CONCURRENCY_MAX: '0' }).join('\n')).toMatch(/RESTORE_CONCURRENCY_MAX="0"/);
  });

  it('MESSAGES_PROJECTION is off unless turned on', () => {
    expect(loadConfig({}).messagesProjection).toBe(false);
    expect(loadConfig({ MESSAGES_PROJECTION: 'true' }).messagesProjection).toBe(true);
  });

  it('webhook outage policy and dead-letter bounds: defaults and units; retired settings are named', () => {
    expect(loadConfig({}).webhook).toMatchObject({
      backoffBaseMs: 1_000,
      probeMaxMs: 30_000,
      maxAgeMs: 72 * 3_600_000,
      deadRetentionMs: 720 * 3_600_000,
      maxDead: 1_000,
      redeliverPerMinute: 30,
    });
    expect(
      loadConfig({
        WEBHOOK_MAX_AGE_HOURS: '24',
        WEBHOOK_PROBE_MAX_MS: '5000',
        WEBHOOK_RETENTION_DEAD_HOURS: '1',
      }).webhook,
    ).toMatchObject({ maxAgeMs: 24 * 3_600_000, probeMaxMs: 5_000, deadRetentionMs: 3_600_000 });
    expect(problemsOf({ WEBHOOK_MAX_AGE_HOURS: '0' })).toHaveLength(1);
    expect(loadConfig({}).retired).toEqual([]);
    const retired = loadConfig({ WEBHOOK_MAX_ATTEMPTS: '8', WEBHOOK_MAX_PENDING: '10000' }).retired;
    expect(retired).toHaveLength(2);
    expect(retired[0]).toMatch(/^WEBHOOK_MAX_ATTEMPTS is no longer used: .*WEBHOOK_MAX_AGE_HOURS/);
  });

  it('WEBHOOK_CA_FILE: a file of PEM certificates, read at start; anything else stops start-up', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zapwire-ca-'));
    try {
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      writeFileSync(join(dir, 'ca.pem'), pem + pem);
      expect(loadConfig({ WEBHOOK_CA_FILE: join(dir, 'ca.pem') }).webhook.extraCaCertificates).toHaveLength(
        2,
      );
      writeFileSync(join(dir, 'not.pem'), 'hello');
      expect(problemsOf({ WEBHOOK_CA_FILE: join(dir, 'not.pem') })[0]).toMatch(
        /expected a file of PEM certificates/,
      );
      expect(problemsOf({ WEBHOOK_CA_FILE: join(dir, 'missing.pem') })[0]).toMatch(
        /cannot read the file \(ENOENT\)/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('WEBHOOK_PIPELINE (8 by default, 1..64) and DATABASE_PREPARED_STATEMENTS (on by default)', () => {
    expect(loadConfig({}).webhook.pipeline).toBe(8);
    expect(loadConfig({ WEBHOOK_PIPELINE: '1' }).webhook.pipeline).toBe(1);
    expect(problemsOf({ WEBHOOK_PIPELINE: '0' })).toHaveLength(1);
    expect(problemsOf({ WEBHOOK_PIPELINE: '65' })).toHaveLength(1);
    expect(loadConfig({}).databasePreparedStatements).toBe(true);
    expect(loadConfig({ DATABASE_PREPARED_STATEMENTS: 'false' }).databasePreparedStatements).toBe(false);
  });

  it('reports every problem at once', () => {
    expect(problemsOf({ PORT: 'x', LOG_LEVEL: 'y' })).toHaveLength(2);
  });

  it('API_COMPAT picks the wire format; CORS_ORIGINS is a comma list', () => {
    expect(loadConfig({}).apiCompat).toBe('default');
    expect(loadConfig({}).corsOrigins).toBeUndefined();
    const evolution = loadConfig({
      API_COMPAT: 'evolution-go',
      CORS_ORIGINS: 'https://a.example, https://b.example',
    });
    expect(evolution.apiCompat).toBe('evolution-go');
    expect(evolution.corsOrigins).toEqual(['https://a.example', 'https://b.example']);
    expect(() => loadConfig({ API_COMPAT: 'evolution' })).toThrow(
      /API_COMPAT="evolution": expected one of default, evolution-go/,
    );
  });

  it('accepts a 32-byte key as hex or base64', () => {
    const hex = 'ab'.repeat(32);
    expect(loadConfig({ SESSION_ENCRYPTION_KEY: hex }).sessionEncryptionKey?.length).toBe(32);
    const b64 = Buffer.alloc(32, 7).toString('base64');
    expect(loadConfig({ SESSION_ENCRYPTION_KEY: b64 }).sessionEncryptionKey?.length).toBe(32);
  });

  it('generates a secret once, private to the owner, and keeps it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zw-secret-'));
    const first = loadOrCreateSecret(dir, 'global-api-key');
    const second = loadOrCreateSecret(dir, 'global-api-key');
    expect(first.created).toBe(true);
    expect(second).toEqual({ value: first.value, created: false });
    expect(readFileSync(join(dir, 'global-api-key'), 'utf8').trim()).toBe(first.value);
    expect(statSync(join(dir, 'global-api-key')).mode & 0o777).toBe(0o600);
  });
});

describe('request log redaction', () => {
  it('removes secrets from logged URLs', async () => {
    const { redactQuery } = await import('../../src/http/app.ts');
    expect(redactQuery('/ws?apikey=abc123&events=MESSAGE')).toBe('/ws?apikey=[redacted]&events=MESSAGE');
    expect(redactQuery('/x?a=1&TOKEN=zz')).toBe('/x?a=1&TOKEN=[redacted]');
    expect(redactQuery('/instance/all')).toBe('/instance/all');
  });
});
