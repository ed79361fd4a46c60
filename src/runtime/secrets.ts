/**
 * Instance secrets that must never reach the event log (it is append-only and sent to sinks): proxy
 * passwords and webhook signing secrets. Stored AES-256-GCM encrypted in the read-model database and
 * deleted with the instance, so nothing of them survives a delete.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SqlDatabase } from '../store/sql.ts';

/** `instance_token`: kept only under API_COMPAT=evolution-go, whose admin views show instance tokens. */
export type SecretKind = 'proxy_password' | 'webhook_secret' | 'instance_token';

export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('SecretBox needs a 32-byte key');
  }

  seal(plaintext: string, associatedData: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  open(sealed: string, associatedData: string): string {
    const raw = Buffer.from(sealed, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  }
}

export class InstanceSecrets {
  constructor(
    private readonly db: SqlDatabase,
    private readonly box: SecretBox,
  ) {}

  async put(instanceId: string, kind: SecretKind, value: string): Promise<void> {
    await this.db.query(
      `INSERT INTO zw_instance_secrets (instance_id, kind, sealed) VALUES ($1, $2, $3)
       ON CONFLICT (instance_id, kind) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()`,
      [instanceId, kind, this.box.seal(value, `${instanceId}:${kind}`)],
    );
  }

  async get(instanceId: string, kind: SecretKind): Promise<string | undefined> {
    const { rows } = await this.db.query<{ sealed: string }>(
      'SELECT sealed FROM zw_instance_secrets WHERE instance_id = $1 AND kind = $2',
      [instanceId, kind],
    );
    return rows[0] ? this.box.open(rows[0].sealed, `${instanceId}:${kind}`) : undefined;
  }

  /** Every instance's secret of one kind, by instance id. */
  async allOf(kind: SecretKind): Promise<Map<string, string>> {
    const { rows } = await this.db.query<{ instance_id: string; sealed: string }>(
      'SELECT instance_id, sealed FROM zw_instance_secrets WHERE kind = $1',
      [kind],
    );
    return new Map(rows.map((r) => [r.instance_id, this.box.open(r.sealed, `${r.instance_id}:${kind}`)]));
  }

  async remove(instanceId: string, kind?: SecretKind): Promise<void> {
    if (kind)
      await this.db.query('DELETE FROM zw_instance_secrets WHERE instance_id = $1 AND kind = $2', [
        instanceId,
        kind,
      ]);
    else await this.db.query('DELETE FROM zw_instance_secrets WHERE instance_id = $1', [instanceId]);
  }
}
