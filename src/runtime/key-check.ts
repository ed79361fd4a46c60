/**
 * Guards SESSION_ENCRYPTION_KEY. Everything sealed at rest (instance secrets, WhatsApp sessions) opens only
 * with the key it was sealed under; a changed key used to go unnoticed (/health ok) while every webhook
 * and session failed. So the database keeps a check value of the key, and a start with another key is
 * refused, in one line, unless the old key is given as SESSION_ENCRYPTION_KEY_PREVIOUS: then this is a
 * rotation, and the instance secrets and session credentials are sealed again under the new key.
 */
import { createHmac } from 'node:crypto';
import type { SqlDatabase, SqlExecutor } from '../store/sql.ts';
import { SecretBox } from './secrets.ts';

const CHECK_NAME = 'session-encryption-key';

export class SessionKeyMismatchError extends Error {
  override readonly name = 'SessionKeyMismatchError';
}

export function keyCheckValue(key: Buffer): string {
  return createHmac('sha256', key).update('zapwire/session-key-check/v1').digest('hex');
}

/** Re-seals what the adapter stores under the session key; runs inside the rotation's transaction. */
export type ResealStep = (tx: SqlExecutor, previous: Buffer, current: Buffer) => Promise<void>;

export type KeyCheckOutcome = 'recorded' | 'matches' | 'rotated';

/** Said at start after a rotation: when SESSION_ENCRYPTION_KEY_PREVIOUS may go. */
export const KEY_ROTATED_NOTICE =
  'SESSION_ENCRYPTION_KEY rotated: secrets and sessions sealed again under the new key; keep SESSION_ENCRYPTION_KEY_PREVIOUS set until every instance has reconnected once, then remove it';

export async function verifySessionKey(
  db: SqlDatabase,
  key: Buffer,
  options: { readonly previous?: Buffer | undefined; readonly reseal?: readonly ResealStep[] } = {},
): Promise<KeyCheckOutcome> {
  const current = keyCheckValue(key);
  const { rows } = await db.query<{ check_value: string }>(
    'SELECT check_value FROM zw_key_check WHERE name = $1',
    [CHECK_NAME],
  );
  const stored = rows[0]?.check_value;
  if (stored === current) return 'matches';
  if (stored === undefined) {
    // A database from before the check value: the key must open what is already sealed.
    if (!(await opensExistingSecrets(db, new SecretBox(key))))
      throw new SessionKeyMismatchError(
        'SESSION_ENCRYPTION_KEY does not open the secrets stored in this database: start with the key they were sealed with',
      );
    await db.query(
      'INSERT INTO zw_key_check (name, check_value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING',
      [CHECK_NAME, current],
    );
    return 'recorded';
  }
  const { previous } = options;
  if (!previous || keyCheckValue(previous) !== stored)
    throw new SessionKeyMismatchError(
      previous
        ? 'neither SESSION_ENCRYPTION_KEY nor SESSION_ENCRYPTION_KEY_PREVIOUS is the key this database was sealed with'
        : 'SESSION_ENCRYPTION_KEY is not the key this database was sealed with: restore it, or rotate by setting the old one as SESSION_ENCRYPTION_KEY_PREVIOUS',
    );
  await db.transaction(async (tx) => {
    await resealInstanceSecrets(tx, new SecretBox(previous), new SecretBox(key));
    for (const step of options.reseal ?? []) await step(tx, previous, key);
    await tx.query('UPDATE zw_key_check SET check_value = $2, updated_at = now() WHERE name = $1', [
      CHECK_NAME,
      current,
    ]);
  });
  return 'rotated';
}

async function opensExistingSecrets(db: SqlDatabase, box: SecretBox): Promise<boolean> {
  const { rows } = await db.query<{ instance_id: string; kind: string; sealed: string }>(
    'SELECT instance_id, kind, sealed FROM zw_instance_secrets LIMIT 1',
  );
  const row = rows[0];
  if (!row) return true;
  try {
    box.open(row.sealed, `${row.instance_id}:${row.kind}`);
    return true;
  } catch {
    return false;
  }
}

async function resealInstanceSecrets(tx: SqlExecutor, from: SecretBox, to: SecretBox): Promise<void> {
  const { rows } = await tx.query<{ instance_id: string; kind: string; sealed: string }>(
    'SELECT instance_id, kind, sealed FROM zw_instance_secrets',
  );
  for (const row of rows) {
    const aad = `${row.instance_id}:${row.kind}`;
    await tx.query('UPDATE zw_instance_secrets SET sealed = $3 WHERE instance_id = $1 AND kind = $2', [
      row.instance_id,
      row.kind,
      to.seal(from.open(row.sealed, aad), aad),
    ]);
  }
}

/**
 * The check at start: a key that does not match closes the database before the error goes up (the process
 * exits with it); a rotation is said in the log with when the previous key may go.
 */
export async function checkSessionKeyAtStart(
  db: SqlDatabase,
  key: Buffer,
  options: { readonly previous?: Buffer | undefined; readonly reseal?: readonly ResealStep[] },
  warn: (message: string) => void,
): Promise<void> {
  const outcome = await verifySessionKey(db, key, options).catch(async (error: unknown) => {
    await db.close().catch(() => undefined);
    throw error;
  });
  if (outcome === 'rotated') warn(KEY_ROTATED_NOTICE);
}
