import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Curve, proto, type AuthenticationCreds, type SignalDataTypeMap } from '@whiskeysockets/baileys';
import { openTestPostgres, type TestPostgres } from '../../../support/postgres.ts';
import type { SqlDatabase, SqlResult } from '../../../../src/store/sql.ts';
import { BaileysAuthStore, isPaired } from '../../../../src/whatsapp/baileys/auth-store.ts';
import { BAILEYS_MIGRATIONS_DIR } from '../../../../src/whatsapp/baileys/index.ts';
import { eventually } from '../../../support/zapwire.ts';

let pg: TestPostgres;
const key = randomBytes(32);

beforeAll(async () => {
  pg = await openTestPostgres({ migrations: [BAILEYS_MIGRATIONS_DIR] });
});
afterAll(async () => {
  await pg.close();
});
beforeEach(async () => {
  await pg.truncate(['wa_auth_state']);
});

function pair(creds: AuthenticationCreds, phone = '5511988887777'): void {
  creds.me = { id: `${phone}:3@s.whatsapp.net`, lid: '99887766@lid', name: 'Canary Phone' };
  creds.account = {
    details: Buffer.from('details'),
    accountSignatureKey: Buffer.from('sigkey'),
    accountSignature: Buffer.from('sig'),
    deviceSignature: Buffer.from('devsig'),
  };
}

function preKeys(count: number): Record<string, SignalDataTypeMap['pre-key']> {
  const out: Record<string, SignalDataTypeMap['pre-key']> = {};
  for (let i = 1; i <= count; i++) out[String(i)] = Curve.generateKeyPair();
  return out;
}

async function rows(): Promise<
  Array<{ instance_id: string; category: string; key_ref: string; sealed: Uint8Array }>
> {
  const { rows } = await pg.db.query<{
    instance_id: string;
    category: string;
    key_ref: string;
    sealed: Uint8Array;
  }>('SELECT instance_id, category, key_ref, sealed FROM wa_auth_state');
  return rows;
}

/** Counts statements, to check that a batch of keys is one write. */
function counting(db: SqlDatabase): { db: SqlDatabase; count: () => number } {
  let n = 0;
  const wrapped: SqlDatabase = {
    dialect: db.dialect,
    query: <Row>(text: string, params?: readonly unknown[]): Promise<SqlResult<Row>> => {
      n += 1;
      return db.query<Row>(text, params);
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          query: <Row>(text: string, params?: readonly unknown[]) => {
            n += 1;
            return tx.query<Row>(text, params);
          },
        }),
      ),
    exec: (script) => db.exec(script),
    close: () => db.close(),
  };
  return { db: wrapped, count: () => n };
}

describe('BaileysAuthStore', () => {
  it('starts an unknown instance with fresh, unpaired creds and writes nothing until it pairs', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    expect(session.paired).toBe(false);
    expect(session.creds.noiseKey.public).toHaveLength(32);
    await session.saveCreds();
    expect(await rows()).toHaveLength(0);
    // A pairing code request sets `me` but not `account`: still nothing to keep.
    session.creds.me = { id: '5511988887777@s.whatsapp.net', name: '~' };
    await session.saveCreds();
    expect(await rows()).toHaveLength(0);
    expect(await store.hasSession('i1')).toBe(false);
  });

  it('round-trips paired creds (Buffers included) through a fresh store', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    pair(session.creds);
    await session.saveCreds();
    const again = await new BaileysAuthStore(pg.db, key).open('i1');
    expect(again.paired).toBe(true);
    expect(isPaired(again.creds)).toBe(true);
    expect(
      Buffer.from(again.creds.noiseKey.private).equals(Buffer.from(session.creds.noiseKey.private)),
    ).toBe(true);
    expect(again.creds.me?.id).toBe('5511988887777:3@s.whatsapp.net');
    expect(Buffer.isBuffer(again.creds.signedIdentityKey.public)).toBe(true);
    expect(again.creds.registrationId).toBe(session.creds.registrationId);
  });

  it('stores a batch of 812 pre-keys in one transaction and reads them back', async () => {
    const counter = counting(pg.db);
    const store = new BaileysAuthStore(counter.db, key);
    const session = await store.open('i1');
    const batch = preKeys(812);
    const before = counter.count();
    await session.state.keys.set({ 'pre-key': batch });
    // One INSERT for the whole batch (plus BEGIN/COMMIT handled by the adapter's transaction).
    expect(counter.count() - before).toBe(1);
    expect(await rows()).toHaveLength(812);

    const fresh = await new BaileysAuthStore(pg.db, key).open('i1');
    const got = await fresh.state.keys.get('pre-key', ['1', '400', '812', '9999']);
    expect(Object.keys(got).sort()).toEqual(['1', '400', '812']);
    expect(Buffer.from(got['400']!.private).equals(Buffer.from(batch['400']!.private))).toBe(true);
  });

  it('deletes keys set to null and restores app-state keys as protobuf objects', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    await session.state.keys.set({
      session: { '5511988887777.0': Buffer.from('session-record') },
      'app-state-sync-key': { AAAA: { keyData: Buffer.from('k'), timestamp: 5 } },
      'lid-mapping': { '5511988887777': '99887766' },
    });
    await session.state.keys.set({ session: { '5511988887777.0': null } });
    await store.settled('i1');
    const fresh = await new BaileysAuthStore(pg.db, key).open('i1');
    expect(await fresh.state.keys.get('session', ['5511988887777.0'])).toEqual({});
    const appKey = (await fresh.state.keys.get('app-state-sync-key', ['AAAA']))['AAAA'];
    expect(appKey).toBeInstanceOf(proto.Message.AppStateSyncKeyData);
    expect(Buffer.from(appKey!.keyData!).toString()).toBe('k');
    expect(await fresh.state.keys.get('lid-mapping', ['5511988887777'])).toEqual({
      '5511988887777': '99887766',
    });
  });

  it('keeps no plaintext at rest: neither key bytes nor the phone numbers in key ids', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    pair(session.creds);
    await session.saveCreds();
    const canary = Buffer.from('CANARY-SESSION-BYTES-0123456789');
    await session.state.keys.set({ session: { '5511988887777.0': canary } });
    await store.settled('i1');
    const all = await rows();
    expect(all).toHaveLength(2);
    for (const row of all) {
      const sealed = Buffer.from(row.sealed);
      expect(sealed.includes(canary)).toBe(false);
      expect(sealed.includes(Buffer.from(canary.toString('base64')))).toBe(false);
      expect(sealed.includes(Buffer.from(session.creds.noiseKey.private))).toBe(false);
      expect(sealed.includes(Buffer.from('5511988887777'))).toBe(false);
      expect(row.key_ref).not.toContain('5511988887777');
    }
  });

  it('refuses rows moved to another instance or opened with another key', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    pair(session.creds);
    await session.saveCreds();
    await pg.db.query(`UPDATE wa_auth_state SET instance_id = 'i2'`);
    await expect(new BaileysAuthStore(pg.db, key).open('i2')).rejects.toThrow();
    await pg.db.query(`UPDATE wa_auth_state SET instance_id = 'i1'`);
    await expect(new BaileysAuthStore(pg.db, randomBytes(32)).open('i1')).rejects.toThrow();
    await expect(new BaileysAuthStore(pg.db, key).open('i1')).resolves.toBeDefined();
  });

  it('skips a creds save that would write the same bytes, writes a real change', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const first = await store.open('i1');
    pair(first.creds);
    await first.saveCreds();
    first.release();
    const counter = counting(pg.db);
    const again = await new BaileysAuthStore(counter.db, key).open('i1');
    const before = counter.count();
    await again.saveCreds(); // a login re-announcing the same `me`
    expect(counter.count() - before).toBe(0);
    again.creds.me = { ...again.creds.me!, lid: '11112222@lid' };
    await again.saveCreds();
    expect(counter.count() - before).toBe(1);
    expect((await new BaileysAuthStore(pg.db, key).open('i1')).creds.me?.lid).toBe('11112222@lid');
  });

  it('lets the next socket see creds that the previous one was still writing', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const first = await store.open('i1');
    pair(first.creds);
    void first.saveCreds(); // not awaited: the socket closes with 515 at once
    first.release();
    const second = await store.open('i1');
    expect(second.paired).toBe(true);
  });

  it('removes every row of an instance, and a revoked handle cannot write them back', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    pair(session.creds);
    await session.saveCreds();
    await session.state.keys.set({ 'pre-key': preKeys(10), session: { 'a.0': Buffer.from('x') } });
    const other = await store.open('i2');
    pair(other.creds);
    await other.saveCreds();

    await store.remove('i1');
    expect((await rows()).filter((r) => r.instance_id === 'i1')).toHaveLength(0);
    expect((await rows()).filter((r) => r.instance_id === 'i2')).toHaveLength(1);

    // The old socket is still winding down and tries to write.
    await session.state.keys.set({ session: { 'b.0': Buffer.from('y') } });
    await session.saveCreds();
    expect(await session.state.keys.get('session', ['a.0'])).toEqual({});
    expect((await rows()).filter((r) => r.instance_id === 'i1')).toHaveLength(0);
    expect(await store.hasSession('i1')).toBe(false);
    await store.remove('i1'); // idempotent
    expect((await store.open('i1')).paired).toBe(false);
  });

  it('serves repeated reads from the cache and stays within its budget', async () => {
    const counter = counting(pg.db);
    const store = new BaileysAuthStore(counter.db, key, { cacheBytes: 20_000, cacheEntries: 1_000 });
    const session = await store.open('i1');
    const sessions: Record<string, Uint8Array> = {};
    for (let i = 0; i < 200; i++) sessions[`user${i}.0`] = randomBytes(200);
    await session.state.keys.set({ session: sessions });
    await store.settled('i1'); // sessions are written behind: count reads only
    expect(store.cacheUsage().bytes).toBeLessThanOrEqual(20_000);
    expect(store.cacheUsage().entries).toBeLessThan(200);
    const before = counter.count();
    await session.state.keys.get('session', ['user199.0']);
    await session.state.keys.get('session', ['user199.0']);
    expect(counter.count() - before).toBe(0); // recently written: cached
    await session.state.keys.get('session', ['user0.0']);
    expect(counter.count() - before).toBe(1); // evicted long ago: one read
    // A missing key is remembered as missing.
    await session.state.keys.get('session', ['nobody.0']);
    await session.state.keys.get('session', ['nobody.0']);
    expect(counter.count() - before).toBe(2);
  });

  it('writes ratchet state behind: no database wait per message, the last value of each key, once settled', async () => {
    const counter = counting(pg.db);
    const store = new BaileysAuthStore(counter.db, key);
    const session = await store.open('i1');
    const before = counter.count();
    // Baileys saves the session after every message it decrypts and waits for the save.
    for (let i = 0; i < 50; i++) {
      const started = counter.count();
      await session.state.keys.set({ session: { 'alice.0': Buffer.from(`ratchet-${i}`) } });
      // The cache answers at once with the newest value, written or not.
      expect(await session.state.keys.get('session', ['alice.0'])).toEqual({
        'alice.0': Buffer.from(`ratchet-${i}`),
      });
      expect(counter.count() - started).toBeLessThanOrEqual(1);
    }
    await store.settled('i1');
    // Coalesced: far fewer statements than the 50 sets (one in flight, the next batch takes the rest).
    expect(counter.count() - before).toBeLessThan(50);
    const fresh = await new BaileysAuthStore(pg.db, key).open('i1');
    expect(await fresh.state.keys.get('session', ['alice.0'])).toEqual({
      'alice.0': Buffer.from('ratchet-49'),
    });
  });

  it('keeps the order of a deletion between two ratchet writes of the same key', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    await session.state.keys.set({ session: { 'bob.0': Buffer.from('one') } });
    const deleted = session.state.keys.set({ session: { 'bob.0': null } });
    await session.state.keys.set({ session: { 'bob.0': Buffer.from('two') } });
    await deleted;
    await store.settled('i1');
    const fresh = await new BaileysAuthStore(pg.db, key).open('i1');
    expect(await fresh.state.keys.get('session', ['bob.0'])).toEqual({ 'bob.0': Buffer.from('two') });
  });

  it('still waits for pre-keys to be saved (they are uploaded right after)', async () => {
    const store = new BaileysAuthStore(pg.db, key);
    const session = await store.open('i1');
    await session.state.keys.set({ 'pre-key': preKeys(5) });
    expect((await rows()).filter((r) => r.category === 'pre-key')).toHaveLength(5);
  });

  it('tries a failed write-behind again with the values that are still the latest', async () => {
    let failNext = true;
    const flaky: SqlDatabase = {
      ...pg.db,
      dialect: pg.db.dialect,
      query: <Row>(text: string, params?: readonly unknown[]): Promise<SqlResult<Row>> => {
        if (failNext && text.includes('INSERT INTO wa_auth_state')) {
          failNext = false;
          return Promise.reject(new Error('connection lost'));
        }
        return pg.db.query<Row>(text, params);
      },
      transaction: (fn) => pg.db.transaction(fn),
      exec: (script) => pg.db.exec(script),
      close: () => pg.db.close(),
    };
    const store = new BaileysAuthStore(flaky, key);
    const session = await store.open('i1');
    await session.state.keys.set({ session: { 'carol.0': Buffer.from('kept') } });
    await store.settled('i1');
    expect(store.failedWriteBehinds).toBe(1);
    expect((await rows()).filter((r) => r.category === 'session')).toHaveLength(0);
    await eventually(async () => (await rows()).some((r) => r.category === 'session'), 5_000);
    const fresh = await new BaileysAuthStore(pg.db, key).open('i1');
    expect(await fresh.state.keys.get('session', ['carol.0'])).toEqual({ 'carol.0': Buffer.from('kept') });
  });
});
