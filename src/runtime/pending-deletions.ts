/**
 * The durable part of the delete saga and of token rotation (src/runtime/deletion.ts): a record written
 * before the first step of the operation and removed after its last, so a crash in between leaves a note
 * of what is still to do. Kept in the read-model database (zw_pending_deletions, zw_retired_tokens), beside
 * the sealed secrets, whatever the event store.
 */
import type { SqlDatabase } from '../store/sql.ts';

export interface PendingDeletion {
  readonly instanceId: string;
  readonly name: string;
  /** The instance's InstanceCreated time, for the audit record. */
  readonly createdAt: string;
  readonly by: string;
  /** When the delete was asked for: the audit record's time. */
  readonly requestedAt: Date;
  /** Digests of the tokens whose reservation streams go with the instance. */
  readonly tokenHashes: readonly string[];
  /** The audit record is appended. */
  readonly audited: boolean;
}

interface Row {
  instance_id: string;
  name: string;
  created_at: string;
  deleted_by: string;
  requested_at: Date;
  token_hashes: string[];
  audited: boolean;
}

export class PendingDeletions {
  constructor(private readonly db: SqlDatabase) {}

  /** Records a delete (again: token digests add up, the rest stays as first recorded). */
  async record(
    deletion: Omit<PendingDeletion, 'audited' | 'requestedAt'> & { readonly requestedAt?: Date },
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO zw_pending_deletions (instance_id, name, created_at, deleted_by, token_hashes, requested_at)
       VALUES ($1, $2, $3, $4, $5::text[], coalesce($6::timestamptz, now()))
       ON CONFLICT (instance_id) DO UPDATE SET token_hashes = ARRAY(
         SELECT DISTINCT unnest(zw_pending_deletions.token_hashes || EXCLUDED.token_hashes))`,
      [
        deletion.instanceId,
        deletion.name,
        deletion.createdAt,
        deletion.by,
        [...deletion.tokenHashes],
        deletion.requestedAt ?? null,
      ],
    );
  }

  async get(instanceId: string): Promise<PendingDeletion | undefined> {
    const { rows } = await this.db.query<Row>('SELECT * FROM zw_pending_deletions WHERE instance_id = $1', [
      instanceId,
    ]);
    const row = rows[0];
    return row
      ? {
          instanceId: row.instance_id,
          name: row.name,
          createdAt: row.created_at,
          by: row.deleted_by,
          requestedAt: new Date(row.requested_at),
          tokenHashes: row.token_hashes,
          audited: row.audited,
        }
      : undefined;
  }

  /** Instances whose delete has not finished. */
  async ids(): Promise<string[]> {
    const { rows } = await this.db.query<{ instance_id: string }>(
      'SELECT instance_id FROM zw_pending_deletions',
    );
    return rows.map((row) => row.instance_id);
  }

  async markAudited(instanceId: string): Promise<void> {
    await this.db.query('UPDATE zw_pending_deletions SET audited = true WHERE instance_id = $1', [
      instanceId,
    ]);
  }

  async done(instanceId: string): Promise<void> {
    await this.db.query('DELETE FROM zw_pending_deletions WHERE instance_id = $1', [instanceId]);
  }

  /** A rotation is about to revoke these tokens of the instance. */
  async retire(instanceId: string, tokenHashes: readonly string[]): Promise<void> {
    if (tokenHashes.length === 0) return;
    await this.db.query(
      `INSERT INTO zw_retired_tokens (token_hash, instance_id) SELECT unnest($2::text[]), $1
       ON CONFLICT (token_hash) DO NOTHING`,
      [instanceId, [...tokenHashes]],
    );
  }

  /** Tokens of the instance a rotation retired whose streams may still exist. */
  async retiredOf(instanceId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ token_hash: string }>(
      'SELECT token_hash FROM zw_retired_tokens WHERE instance_id = $1',
      [instanceId],
    );
    return rows.map((row) => row.token_hash);
  }

  /** The retired tokens' streams are gone. */
  async forgetRetired(tokenHashes: readonly string[]): Promise<void> {
    if (tokenHashes.length === 0) return;
    await this.db.query('DELETE FROM zw_retired_tokens WHERE token_hash = ANY($1::text[])', [
      [...tokenHashes],
    ]);
  }
}
