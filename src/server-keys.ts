/**
 * The server's own keys, each from the environment or else generated under DATA_DIR on the first start
 * and read back on the next ones: the admin API key (printed once when generated), the key that seals
 * secrets and sessions at rest, and the pepper of stored token digests.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadOrCreateSecret, type Config } from './config.ts';
import { tokenDigests, type TokenDigests } from './domain/tokens.ts';

export interface ServerKeys {
  readonly globalApiKey: string;
  readonly sessionKey: Buffer;
  /** How tokens are stored: HMAC under TOKEN_PEPPER, which several nodes on one store must share. */
  readonly tokens: TokenDigests;
}

export function loadServerKeys(
  config: Pick<Config, 'dataDir' | 'globalApiKey' | 'sessionEncryptionKey' | 'tokenPepper'>,
): ServerKeys {
  const { dataDir } = config;
  const apiKey = config.globalApiKey
    ? { value: config.globalApiKey, created: false }
    : loadOrCreateSecret(dataDir, 'global-api-key');
  if (apiKey.created) {
    process.stderr.write(
      `\n  zapwire generated the admin API key (stored in ${join(dataDir, 'global-api-key')}; shown once):\n\n    GLOBAL_API_KEY=${apiKey.value}\n\n`,
    );
  }
  const sessionKey =
    config.sessionEncryptionKey ??
    Buffer.from(
      loadOrCreateSecret(dataDir, 'session-encryption-key', () => randomBytes(32).toString('hex')).value,
      'hex',
    );
  const pepper = config.tokenPepper ?? loadOrCreateSecret(dataDir, 'token-pepper').value;
  return { globalApiKey: apiKey.value, sessionKey, tokens: tokenDigests(pepper) };
}
