/**
 * Finding 11: a delete on KurrentDB is soft (the events stay until a scavenge, and a late append brings
 * the stream back). KURRENTDB_TOMBSTONE=true hard-deletes a deleted instance's own streams (`instance-`,
 * `wa-`, `outbox-`): nothing can write them again; name and token reservations stay soft-deleted, so a name can be
 * used again. Runs the whole app on the KurrentDB stand-in (test/support/kurrentdb-standin).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceStream, whatsappStream } from '../../../src/domain/events.ts';
import { outboxStream } from '../../../src/domain/outbox.ts';
import { startKurrentStandIn, type KurrentStandIn } from '../../support/kurrentdb-standin/server.ts';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let standIn: KurrentStandIn;
beforeAll(async () => {
  standIn = await startKurrentStandIn();
});
afterAll(async () => {
  await standIn?.stop();
});

const note = (text: string) => [
  {
    type: 'RuntimeLogged',
    data: { at: new Date().toISOString(), level: 'info', message: text, context: {} },
  },
];

async function createAndDelete(t: TestApp, name: string): Promise<string> {
  const r = await t.request<{ id: string }>('POST', '/instance/create', { body: { name } });
  expect(r.status).toBe(201);
  const id = r.body.id;
  await t.zapwire.store.append(whatsappStream(id), note('before the delete'), { expectedVersion: 'any' });
  expect((await t.request('DELETE', `/instance/delete/${id}`)).status).toBe(200);
  expect(await t.zapwire.store.streamVersion(instanceStream(id))).toBe(0);
  expect(await t.zapwire.store.streamVersion(whatsappStream(id))).toBe(0);
  return id;
}

describe('deleting an instance on KurrentDB', () => {
  it('KURRENTDB_TOMBSTONE=true: its streams are tombstoned, a late write cannot bring them back, its name is free again', async () => {
    const t = await startTestApp({ env: { EVENTSTORE_URL: standIn.url, KURRENTDB_TOMBSTONE: 'true' } });
    try {
      const before = standIn.calls['tombstone'] ?? 0;
      const id = await createAndDelete(t, 'tombstoned');
      // instance-, wa- and outbox- (the outbox's, tombstoned even though this instance never sent anything).
      expect((standIn.calls['tombstone'] ?? 0) - before).toBe(3);
      // A writer this process does not control (another node, a tool) cannot recreate it either.
      await expect(
        t.zapwire.store.append(whatsappStream(id), note('too late'), { expectedVersion: 'any' }),
      ).rejects.toThrow();
      expect(await t.zapwire.store.streamVersion(whatsappStream(id))).toBe(0);
      expect(await t.zapwire.store.readStream(instanceStream(id))).toEqual([]);
      await expect(
        t.zapwire.store.append(outboxStream(id), note('too late'), { expectedVersion: 'any' }),
      ).rejects.toThrow();
      // The name reservation was soft-deleted: the name can be used again.
      const again = await t.request('POST', '/instance/create', { body: { name: 'tombstoned' } });
      expect(again.status).toBe(201);
    } finally {
      await t.stop();
    }
  });

  it('by default the delete is soft: no tombstone (the events stay until a scavenge)', async () => {
    const t = await startTestApp({ env: { EVENTSTORE_URL: standIn.url } });
    try {
      const before = standIn.calls['tombstone'] ?? 0;
      const id = await createAndDelete(t, 'soft-deleted');
      expect((standIn.calls['tombstone'] ?? 0) - before).toBe(0);
      // What a late append does to a soft-deleted stream (the runtime's own writers refuse to: see
      // deleted-streams.test.ts): it comes back, which is why the tombstone option exists.
      await t.zapwire.store.append(whatsappStream(id), note('too late'), { expectedVersion: 'any' });
      expect(await t.zapwire.store.streamVersion(whatsappStream(id))).toBe(1);
    } finally {
      await t.stop();
    }
  });
});
