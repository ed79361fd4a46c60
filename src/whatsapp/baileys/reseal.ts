/**
 * Key rotation of the Baileys auth state (src/runtime/key-check.ts calls it in the rotation's transaction):
 * every instance's creds, sealed again under the new key. Kept apart from auth-store.ts so the composition
 * root can run it without loading Baileys.
 */
import type { SqlExecutor } from '../../store/sql.ts';
import { AuthStateSealer, rowAad } from './sealing.ts';

export const CREDS = 'creds';
/**
 * The creds row's key is not hashed: it names nothing secret, and a constant key means a wrong
 * SESSION_ENCRYPTION_KEY fails loudly on open instead of making a paired instance look unpaired (and lets
 * a rotation find every creds row; Signal keys move lazily, see AuthStoreOptions.previousSessionKey).
 */
export const CREDS_REF = 'creds';

export async function resealBaileysCreds(tx: SqlExecutor, previous: Buffer, current: Buffer): Promise<void> {
  const from = new AuthStateSealer(previous);
  const to = new AuthStateSealer(current);
  const { rows } = await tx.query<{ instance_id: string; sealed: string }>(
    `SELECT instance_id, encode(sealed, 'base64') AS sealed FROM wa_auth_state WHERE category = $1 AND key_ref = $2`,
    [CREDS, CREDS_REF],
  );
  for (const row of rows) {
    const aad = rowAad(row.instance_id, CREDS, CREDS_REF);
    const plaintext = from.open(Buffer.from(row.sealed, 'base64'), aad);
    await tx.query(
      'UPDATE wa_auth_state SET sealed = $3, updated_at = now() WHERE instance_id = $1 AND category = $2 AND key_ref = $4',
      [row.instance_id, CREDS, to.seal(plaintext, aad), CREDS_REF],
    );
  }
}
