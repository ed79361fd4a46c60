/**
 * Baileys' auth state (creds + Signal keys) in the database, sealed (AES-256-GCM, see sealing.ts), behind
 * one byte-bounded LRU shared by every instance. Replaces useMultiFileAuthState, which keeps a mutex per
 * key file forever (docs/whatsapp.md, "Auth state") and writes key material as plain files.
 *
 * - One row per (instance, category, key): category is Baileys' key type or `creds`; the key id is kept
 *   only as a keyed hash. Values are serialised with Baileys' BufferJSON.
 * - `keys.set` arrives with many keys at once (812 pre-keys after the first login): one statement per batch,
 *   in one transaction.
 * - Writes of an instance run one after another (a promise chain per instance, dropped when idle). A read
 *   that misses the cache waits for the instance's pending writes, and `open` does too: after pair-success
 *   the socket closes with 515 and the next socket must load the creds the previous one just wrote.
 * - Ratchet state (`session`, `sender-key`) is written behind: Baileys saves it after every message it
 *   decrypts and waits for the save before it takes the next message, so awaiting the database here put a
 *   round trip between every two messages of a chat. The cache has the new value at once; the row follows
 *   in the instance's write chain, and values set while a write is in flight are coalesced (the last value
 *   of each key) and sealed when written. What a crash can lose is the same as the relaxed commit below
 *   already allows: the last ratchet steps, which Signal recovers from. Pre-keys, creds and app-state keys
 *   are still awaited (a pre-key must be saved before it is uploaded).
 * - Creds are written only once the device is paired (`creds.account` is set): a QR that nobody scanned,
 *   or a pairing code that nobody typed, leaves nothing behind, and never a half-registered `me` that the
 *   next login would present (and be refused with 401 for).
 * - `remove` revokes every live handle of the instance first, so a socket that is still winding down
 *   cannot write its keys back after the session was deleted.
 */
import {
  BufferJSON,
  initAuthCreds,
  proto,
  type AuthenticationCreds,
  type AuthenticationState,
  type SignalDataSet,
  type SignalDataTypeMap,
  type SignalKeyStore,
} from '@whiskeysockets/baileys';
import { RELAXED_COMMIT } from '../../store/relaxed-commit.ts';
import { FENCED_SQLSTATE, FencedWriteError } from '../../store/errors.ts';
import type { SessionFence, SessionFencing } from '../port.ts';
import type { SqlDatabase, SqlExecutor } from '../../store/sql.ts';
import { ByteLru } from './lru.ts';
import { AuthStateSealer, rowAad } from './sealing.ts';

import { CREDS, CREDS_REF } from './reseal.ts';
/** Rough per-entry overhead of the cache (Map entry, key string, object headers). */
const ENTRY_OVERHEAD_BYTES = 160;
const ROWS_PER_STATEMENT = 1_000;

export interface AuthStoreOptions {
  /** Budget of the shared key cache. Default 16 MiB. */
  readonly cacheBytes?: number;
  /** Most entries in the shared key cache. Default 50 000. */
  readonly cacheEntries?: number;
  /**
   * SESSION_ENCRYPTION_KEY_PREVIOUS during a key rotation: Signal keys still sealed under it are read
   * with it and moved under the current key (their row keys are keyed hashes of ids this store cannot
   * list, so they cannot all be re-sealed up front as the creds are, see resealBaileysCreds).
   */
  readonly previousSessionKey?: Buffer | undefined;
  /**
   * Cluster mode: every write (and the removal) of an instance's session carries this node's lease and
   * is refused by the database when the lease is gone (zw_lease_check, src/cluster/migrations).
   */
  readonly fence?: SessionFencing | undefined;
}

type KeyType = keyof SignalDataTypeMap;

interface Row {
  readonly category: string;
  readonly reference: string;
  readonly sealed: Buffer;
}

/** Serialises a value as Baileys does for its own file store. */
export function serialiseAuthValue(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, BufferJSON.replacer), 'utf8');
}

export function deserialiseAuthValue(category: string, plaintext: Buffer): unknown {
  const value: unknown = JSON.parse(plaintext.toString('utf8'), BufferJSON.reviver);
  // Baileys expects a protobuf object for app-state keys (useMultiFileAuthState does the same).
  if (category === 'app-state-sync-key' && value && typeof value === 'object') {
    return proto.Message.AppStateSyncKeyData.fromObject(value as Record<string, unknown>);
  }
  return value;
}

/** Key types whose writes go behind (see the header): the ratchets that move with every message. */
const WRITTEN_BEHIND: ReadonlySet<string> = new Set(['session', 'sender-key']);
/** After a failed write-behind, the rows are tried again this much later (unless newer values came). */
const WRITE_BEHIND_RETRY_MS = 1_000;

/** Values waiting for the instance's next write-behind; `started` once that write took them. */
interface WriteBehindBatch {
  readonly values: Map<string, RatchetValue>;
  started: boolean;
}

/** A ratchet value to write behind; `value` is what the cache holds for `cacheKey` while it is the latest. */
interface RatchetValue {
  readonly category: string;
  readonly reference: string;
  readonly plaintext: Buffer;
  readonly cacheKey: string;
  readonly value: unknown;
}

export class BaileysAuthStore {
  private readonly cache: ByteLru<unknown>;
  private readonly tails = new Map<string, Promise<void>>();
  /** The batch still open for more values, per instance: the last task of its write chain. */
  private readonly openBatches = new Map<string, WriteBehindBatch>();
  private writeBehindFailures = 0;
  private readonly live = new Map<string, Set<AuthSession>>();
  readonly sealer: AuthStateSealer;
  readonly previousSealer: AuthStateSealer | undefined;
  private readonly fence: SessionFencing | undefined;

  constructor(
    readonly db: SqlDatabase,
    sessionKey: Buffer,
    options: AuthStoreOptions = {},
  ) {
    this.sealer = new AuthStateSealer(sessionKey);
    this.fence = options.fence;
    this.previousSealer = options.previousSessionKey
      ? new AuthStateSealer(options.previousSessionKey)
      : undefined;
    this.cache = new ByteLru<unknown>({
      maxBytes: options.cacheBytes ?? 16 * 1024 * 1024,
      maxEntries: options.cacheEntries ?? 50_000,
    });
  }

  /** Cache statistics (tests, the bench). */
  cacheUsage(): { entries: number; bytes: number } {
    return { entries: this.cache.size, bytes: this.cache.bytes };
  }

  /** Loads (or creates, in memory only) the auth state of an instance for one socket. */
  async open(instanceId: string): Promise<AuthSession> {
    await this.settled(instanceId);
    const saved = await this.readCreds(instanceId);
    const session = new AuthSession(this, instanceId, saved?.creds ?? initAuthCreds(), saved?.plaintext);
    const set = this.live.get(instanceId) ?? new Set<AuthSession>();
    set.add(session);
    this.live.set(instanceId, set);
    return session;
  }

  /** Whether a paired session is saved for the instance. */
  async hasSession(instanceId: string): Promise<boolean> {
    await this.settled(instanceId);
    const { rows } = await this.db.query(
      'SELECT 1 FROM wa_auth_state WHERE instance_id = $1 AND category = $2 LIMIT 1',
      [instanceId, CREDS],
    );
    return rows.length > 0;
  }

  /** Deletes every row of the instance and stops its live handles from writing. Idempotent. */
  async remove(instanceId: string): Promise<void> {
    for (const session of this.live.get(instanceId) ?? []) session.revoke();
    this.cache.deletePrefix(`${instanceId}\u0000`);
    await this.enqueue(instanceId, () =>
      this.fenced(instanceId, async (fence) => {
        await this.db.query(
          `${fenceCte(fence, 2)} DELETE FROM wa_auth_state WHERE instance_id = $1 ${fence ? 'AND (SELECT ok FROM fence)' : ''}`,
          [instanceId, ...fenceParams(fence)],
        );
      }),
    );
    this.cache.deletePrefix(`${instanceId}\u0000`);
  }

  // ------------------------------------------------------------------ used by AuthSession

  /** @internal */
  release(session: AuthSession): void {
    const set = this.live.get(session.instanceId);
    if (!set) return;
    set.delete(session);
    if (set.size === 0) this.live.delete(session.instanceId);
  }

  /** Write-behind batches that failed (each is tried again while no newer value replaced its rows). */
  get failedWriteBehinds(): number {
    return this.writeBehindFailures;
  }

  /**
   * @internal Queues ratchet values to be written behind: they join the instance's open batch when it is
   * still the last task of the chain (a later value of a key replaces the earlier one), or start a new one.
   */
  writeBehind(session: AuthSession, values: readonly RatchetValue[]): void {
    const { instanceId } = session;
    let batch = this.openBatches.get(instanceId);
    if (!batch || batch.started) {
      const fresh: WriteBehindBatch = { values: new Map(), started: false };
      batch = fresh;
      this.openBatches.set(instanceId, fresh);
      void this.enqueueTask(instanceId, async () => {
        fresh.started = true;
        if (this.openBatches.get(instanceId) === fresh) this.openBatches.delete(instanceId);
        if (session.isRevoked) return;
        const rows = [...fresh.values.values()].map((v) => ({
          category: v.category,
          reference: v.reference,
          sealed: this.sealer.seal(v.plaintext, rowAad(instanceId, v.category, v.reference)),
        }));
        try {
          await this.writeRows(instanceId, rows, []);
        } catch (error) {
          this.writeBehindFailures += 1;
          // A fenced node stops writing (its socket is being closed); otherwise try again a little later
          // with those of these values that are still the latest (the cache holds the same object).
          if (session.isRevoked || error instanceof FencedWriteError) return;
          const retry = [...fresh.values.values()];
          setTimeout(() => {
            const latest = retry.filter((v) => this.cache.peek(v.cacheKey) === v.value);
            if (!session.isRevoked && latest.length > 0) this.writeBehind(session, latest);
          }, WRITE_BEHIND_RETRY_MS).unref();
        }
      }).catch(() => undefined);
    }
    for (const value of values) batch.values.set(`${value.category}\u0000${value.reference}`, value);
  }

  /** @internal Runs `task` after every earlier write of the instance. */
  enqueue(instanceId: string, task: () => Promise<void>): Promise<void> {
    // Anything else queued closes the open write-behind batch: a value set after this task must not be
    // written before it (a deletion of the same key, say).
    this.openBatches.delete(instanceId);
    return this.enqueueTask(instanceId, task);
  }

  private enqueueTask(instanceId: string, task: () => Promise<void>): Promise<void> {
    const previous = this.tails.get(instanceId) ?? Promise.resolve();
    const run = previous.then(task);
    const tail = run.catch(() => undefined);
    this.tails.set(instanceId, tail);
    void tail.then(() => {
      if (this.tails.get(instanceId) === tail) this.tails.delete(instanceId);
    });
    return run;
  }

  /** @internal Resolves once the instance's queued writes are done. */
  async settled(instanceId: string): Promise<void> {
    await this.tails.get(instanceId);
  }

  /** @internal */
  cacheKey(instanceId: string, category: string, id: string): string {
    return `${instanceId}\u0000${category}\u0000${id}`;
  }

  /** @internal */
  cached(key: string): unknown {
    return this.cache.get(key);
  }

  /** @internal `null` records a key known to be absent. */
  remember(key: string, value: unknown, bytes: number): void {
    this.cache.set(key, value, bytes + ENTRY_OVERHEAD_BYTES);
  }

  /** @internal */
  forget(key: string): void {
    this.cache.delete(key);
  }

  /** @internal */
  async readRows(
    instanceId: string,
    category: string,
    references: readonly string[],
  ): Promise<Map<string, Buffer>> {
    const found = new Map<string, Buffer>();
    for (let start = 0; start < references.length; start += ROWS_PER_STATEMENT) {
      const chunk = references.slice(start, start + ROWS_PER_STATEMENT);
      const { rows } = await this.db.query<{ key_ref: string; sealed: string }>(
        `SELECT key_ref, encode(sealed, 'base64') AS sealed FROM wa_auth_state
          WHERE instance_id = $1 AND category = $2 AND key_ref = ANY($3::text[])`,
        [instanceId, category, chunk],
      );
      for (const row of rows) found.set(row.key_ref, Buffer.from(row.sealed, 'base64'));
    }
    return found;
  }

  /** @internal One transaction: upserts and deletions of one `keys.set` (or a creds save). */
  async writeRows(instanceId: string, upserts: readonly Row[], deletions: readonly Row[]): Promise<void> {
    if (upserts.length === 0 && deletions.length === 0) return;
    await this.fenced(instanceId, (fence) => this.writeRowsFenced(instanceId, upserts, deletions, fence));
  }

  /** Runs a write with this node's lease token; a refusal tells the fencing and becomes FencedWriteError. */
  private async fenced(
    instanceId: string,
    write: (fence: SessionFence | undefined) => Promise<void>,
  ): Promise<void> {
    const fence = await this.fence?.tokenOf(instanceId);
    try {
      await write(fence);
    } catch (error) {
      if (fence && (error as { code?: unknown } | null)?.code === FENCED_SQLSTATE) {
        this.fence?.refused(instanceId);
        throw new FencedWriteError(instanceId, error instanceof Error ? error.message : String(error));
      }
      throw error;
    }
  }

  private async writeRowsFenced(
    instanceId: string,
    upserts: readonly Row[],
    deletions: readonly Row[],
    fence: SessionFence | undefined,
  ): Promise<void> {
    if (deletions.length === 0 && upserts.length <= ROWS_PER_STATEMENT) {
      // One statement is atomic by itself. Baileys waits for this write before it takes the next message
      // (it saves the ratcheted session of every message it decrypts), so it is one round trip, not three.
      // The lease check is part of the same statement (a CTE), so fencing adds no round trip.
      await upsert(this.db, instanceId, upserts, fence);
      return;
    }
    await this.db.transaction(async (tx) => {
      // The check locks the lease row FOR SHARE until this transaction ends (see zw_lease_check).
      if (fence)
        await tx.query(`SELECT zw_lease_check($1, $2, $3::bigint)`, [instanceId, ...fenceParams(fence)]);
      for (let start = 0; start < upserts.length; start += ROWS_PER_STATEMENT) {
        await upsert(tx, instanceId, upserts.slice(start, start + ROWS_PER_STATEMENT));
      }
      for (let start = 0; start < deletions.length; start += ROWS_PER_STATEMENT) {
        const chunk = deletions.slice(start, start + ROWS_PER_STATEMENT);
        await tx.query(
          `DELETE FROM wa_auth_state AS s USING unnest($2::text[], $3::text[]) AS d(category, key_ref)
            WHERE s.instance_id = $1 AND s.category = d.category AND s.key_ref = d.key_ref`,
          [instanceId, chunk.map((r) => r.category), chunk.map((r) => r.reference)],
        );
      }
    });
  }

  private async readCreds(
    instanceId: string,
  ): Promise<{ creds: AuthenticationCreds; plaintext: Buffer } | undefined> {
    const reference = CREDS_REF;
    const sealed = (await this.readRows(instanceId, CREDS, [reference])).get(reference);
    if (!sealed) return undefined;
    let plaintext: Buffer;
    try {
      plaintext = this.sealer.open(sealed, rowAad(instanceId, CREDS, reference));
    } catch (error) {
      throw new Error(
        `the saved WhatsApp session of instance ${instanceId} cannot be opened: SESSION_ENCRYPTION_KEY changed or the row was altered`,
        { cause: error },
      );
    }
    return { creds: deserialiseAuthValue(CREDS, plaintext) as AuthenticationCreds, plaintext };
  }
}

/**
 * Signal keys (sessions, pre-keys, sender keys) are saved with a relaxed commit (no fsync wait; see
 * RELAXED_COMMIT): only a crash of the database server or the machine can lose the last ones, the same
 * promise the embedded store gives for every write, and Signal recovers a session that stepped back (the
 * sender retries what cannot be decrypted). The credentials, written at pairing, keep the durable commit.
 */
async function upsert(
  tx: SqlExecutor,
  instanceId: string,
  rows: readonly Row[],
  fence?: SessionFence,
): Promise<void> {
  const relaxed = rows.every((r) => r.category !== CREDS) ? `CROSS JOIN ${RELAXED_COMMIT}` : '';
  await tx.query(
    `${fenceCte(fence, 5)} INSERT INTO wa_auth_state (instance_id, category, key_ref, sealed)
     SELECT $1, r.category, r.key_ref, decode(r.sealed, 'base64')
       FROM unnest($2::text[], $3::text[], $4::text[]) AS r(category, key_ref, sealed) ${relaxed}
       ${fence ? 'CROSS JOIN fence WHERE fence.ok' : ''}
     ON CONFLICT (instance_id, category, key_ref)
       DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()`,
    [
      instanceId,
      rows.map((r) => r.category),
      rows.map((r) => r.reference),
      rows.map((r) => r.sealed.toString('base64')),
      ...fenceParams(fence),
    ],
  );
}

/** One socket's view of an instance's auth state. */
/**
 * `WITH fence AS (...)`: the lease check as part of the write's own statement (a CTE with a volatile
 * function runs once, before the rows it joins), its three parameters numbered from `first`.
 */
function fenceCte(fence: SessionFence | undefined, first: number): string {
  if (!fence) return '';
  return `WITH fence AS (SELECT zw_lease_check($1, $${first}, $${first + 1}::bigint) AS ok)`;
}

function fenceParams(fence: SessionFence | undefined): unknown[] {
  return fence ? [fence.nodeId, fence.epoch] : [];
}

export class AuthSession {
  readonly state: AuthenticationState;
  private revoked = false;
  private credsWrite: Promise<void> | undefined;

  constructor(
    private readonly store: BaileysAuthStore,
    readonly instanceId: string,
    readonly creds: AuthenticationCreds,
    /** The creds as last read or written: a save that would write the same bytes is skipped. */
    private savedCreds?: Buffer,
  ) {
    const keys: SignalKeyStore = {
      get: (type, ids) => this.getKeys(type, ids),
      set: (data) => this.setKeys(data),
      clear: () => this.store.remove(this.instanceId),
    };
    this.state = { creds, keys };
  }

  /** The saved session belongs to a paired device: the socket logs in instead of showing a QR. */
  get paired(): boolean {
    return isPaired(this.creds);
  }

  get isRevoked(): boolean {
    return this.revoked;
  }

  /** @internal */
  revoke(): void {
    this.revoked = true;
  }

  /** The socket is gone: stop tracking this handle. */
  release(): void {
    this.store.release(this);
  }

  /**
   * Saves the creds (Baileys mutates `creds` in place before `creds.update`). Coalesced: a save queued
   * but not started yet takes whatever the creds are when it runs.
   */
  saveCreds(): Promise<void> {
    if (this.revoked || !isPaired(this.creds)) return Promise.resolve();
    this.credsWrite ??= this.store.enqueue(this.instanceId, async () => {
      this.credsWrite = undefined;
      if (this.revoked) return;
      const plaintext = serialiseAuthValue(this.creds);
      // Every login re-announces `me` through creds.update; most of the time nothing changed.
      if (this.savedCreds?.equals(plaintext)) return;
      const reference = CREDS_REF;
      const sealed = this.store.sealer.seal(plaintext, rowAad(this.instanceId, CREDS, reference));
      await this.store.writeRows(this.instanceId, [{ category: CREDS, reference, sealed }], []);
      this.savedCreds = plaintext;
    });
    return this.credsWrite;
  }

  private async getKeys<T extends KeyType>(
    type: T,
    ids: string[],
  ): Promise<{ [id: string]: SignalDataTypeMap[T] }> {
    const result: { [id: string]: SignalDataTypeMap[T] } = {};
    if (this.revoked) return result;
    const missing: string[] = [];
    for (const id of ids) {
      const hit = this.store.cached(this.store.cacheKey(this.instanceId, type, id));
      if (hit === undefined) missing.push(id);
      else if (hit !== null) result[id] = hit as SignalDataTypeMap[T];
    }
    if (missing.length === 0) return result;
    await this.store.settled(this.instanceId);
    const { sealer } = this.store;
    const byReference = new Map(missing.map((id) => [sealer.reference(type, id), id]));
    const rows = await this.store.readRows(this.instanceId, type, [...byReference.keys()]);
    const notFound: string[] = [];
    for (const [reference, id] of byReference) {
      const key = this.store.cacheKey(this.instanceId, type, id);
      const sealed = rows.get(reference);
      if (!sealed) {
        notFound.push(id);
        continue;
      }
      const plaintext = sealer.open(sealed, rowAad(this.instanceId, type, reference));
      const value = deserialiseAuthValue(type, plaintext) as SignalDataTypeMap[T];
      result[id] = value;
      // Pre-keys are read once (when a contact starts a session) and then deleted: not worth caching.
      if (type !== 'pre-key') this.store.remember(key, value, plaintext.length);
    }
    const moved = await this.readUnderPreviousKey(type, notFound);
    for (const id of notFound) {
      const key = this.store.cacheKey(this.instanceId, type, id);
      const value = moved.get(id);
      if (value === undefined) this.store.remember(key, null, 0);
      else result[id] = value as SignalDataTypeMap[T];
    }
    return result;
  }

  /** During a key rotation: keys not found under the current key, read under the previous one and moved. */
  private async readUnderPreviousKey(type: KeyType, ids: readonly string[]): Promise<Map<string, unknown>> {
    const found = new Map<string, unknown>();
    const previous = this.store.previousSealer;
    if (!previous || ids.length === 0) return found;
    const byOldReference = new Map(ids.map((id) => [previous.reference(type, id), id]));
    const rows = await this.store.readRows(this.instanceId, type, [...byOldReference.keys()]);
    const moves: Array<{ old: string; row: Row }> = [];
    for (const [oldReference, id] of byOldReference) {
      const sealed = rows.get(oldReference);
      if (!sealed) continue;
      const plaintext = previous.open(sealed, rowAad(this.instanceId, type, oldReference));
      found.set(id, deserialiseAuthValue(type, plaintext));
      const reference = this.store.sealer.reference(type, id);
      moves.push({
        old: oldReference,
        row: {
          category: type,
          reference,
          sealed: this.store.sealer.seal(plaintext, rowAad(this.instanceId, type, reference)),
        },
      });
    }
    if (moves.length > 0) {
      const { instanceId } = this;
      void this.store
        .enqueue(instanceId, () =>
          this.store.db.transaction(async (tx) => {
            // DO NOTHING: a value Baileys wrote under the new key meanwhile is newer than the moved one.
            for (const { old, row } of moves) {
              await tx.query(
                `INSERT INTO wa_auth_state (instance_id, category, key_ref, sealed)
               VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, category, key_ref) DO NOTHING`,
                [instanceId, row.category, row.reference, row.sealed],
              );
              await tx.query(
                'DELETE FROM wa_auth_state WHERE instance_id = $1 AND category = $2 AND key_ref = $3',
                [instanceId, row.category, old],
              );
            }
          }),
        )
        .catch(() => undefined); // not moved now: read under the previous key again next time
    }
    return found;
  }

  private async setKeys(data: SignalDataSet): Promise<void> {
    if (this.revoked) return;
    const { sealer } = this.store;
    const upserts: Row[] = [];
    const deletions: Row[] = [];
    const behind: RatchetValue[] = [];
    for (const [category, values] of Object.entries(data)) {
      if (!values) continue;
      for (const [id, value] of Object.entries(values)) {
        const reference = sealer.reference(category, id);
        const key = this.store.cacheKey(this.instanceId, category, id);
        if (value === null || value === undefined) {
          deletions.push({ category, reference, sealed: Buffer.alloc(0) });
          this.store.remember(key, null, 0);
          continue;
        }
        const plaintext = serialiseAuthValue(value);
        if (WRITTEN_BEHIND.has(category))
          behind.push({ category, reference, plaintext, cacheKey: key, value });
        else
          upserts.push({
            category,
            reference,
            sealed: sealer.seal(plaintext, rowAad(this.instanceId, category, reference)),
          });
        // Fresh pre-keys go to the server and come back at most once each: keep them out of the cache.
        if (category === 'pre-key') this.store.forget(key);
        else this.store.remember(key, value, plaintext.length);
      }
    }
    if (upserts.length === 0 && deletions.length === 0) {
      if (behind.length > 0) this.store.writeBehind(this, behind);
      return;
    }
    // Awaited writes in the same set take the ratchet values with them, in the same order as before.
    const rows = [
      ...upserts,
      ...behind.map((v) => ({
        category: v.category,
        reference: v.reference,
        sealed: sealer.seal(v.plaintext, rowAad(this.instanceId, v.category, v.reference)),
      })),
    ];
    await this.store.enqueue(this.instanceId, async () => {
      if (this.revoked) return;
      await this.store.writeRows(this.instanceId, rows, deletions);
    });
  }
}

export function isPaired(creds: AuthenticationCreds): boolean {
  return Boolean(creds.me?.id && creds.account);
}
