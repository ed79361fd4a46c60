/**
 * The read model as the runtime, the sinks and auth read it (projections/read-model.ts), on PostgreSQL with
 * the real `instances` projection. The lookups the request path depends on answer from the read model when
 * it has the instance, and from the log when it does not have it yet (rebuilt, or behind): an instance is
 * found by id, and its token opens it, unless the log says the instance is deleted or the token revoked.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancesProjection } from '../../../projections/instances.ts';
import { ReadModel } from '../../../projections/read-model.ts';
import { ProjectionRunner } from '../../../projections/runner.ts';
import { DEFAULT_ADVANCED_SETTINGS, type SinkSettings } from '../../../src/domain/events.ts';
import { MIGRATION_DIRECTORIES } from '../../../src/migrations.ts';
import { InstanceSecrets, SecretBox } from '../../../src/runtime/secrets.ts';
import { InstanceSinkDirectory } from '../../../src/sinks/directory.ts';
import { createSqlEventStore } from '../../../src/store/sql-event-store.ts';
import type { Checkpoint, EventStore } from '../../../src/store/port.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';

const silent = pino({ level: 'silent' });
const at = (): string => new Date().toISOString();
const sinks: SinkSettings = {
  webhookUrl: 'https://receiver.example/hook',
  events: ['MESSAGE'],
  rabbitmqEnable: true,
  websocketEnable: false,
  natsEnable: false,
};

let pg: TestPostgres;
let store: EventStore;
let projections: ProjectionRunner;
let readModel: ReadModel;

/**
 * An instance and its token, as the create saga appends them; resolves once the append is done, with the
 * token's position (the log's head would leave it out while another writer's older transaction is open).
 */
async function create(id: string, name: string, tokenHash: string): Promise<Checkpoint> {
  await store.append(`instance-${id}`, [
    {
      type: 'InstanceCreated',
      data: {
        at: at(),
        instanceId: id,
        name,
        createdBy: 'admin',
        advancedSettings: DEFAULT_ADVANCED_SETTINGS,
        sinks,
        proxy: null,
      },
    },
  ]);
  const token = await store.append(`token-${tokenHash}`, [
    { type: 'InstanceTokenAssigned', data: { at: at(), instanceId: id, tokenHash } },
  ]);
  return token.position;
}

beforeAll(async () => {
  pg = await openTestPostgres({ migrations: MIGRATION_DIRECTORIES });
  store = createSqlEventStore(pg.db);
  projections = new ProjectionRunner(store, pg.db, [instancesProjection], silent);
  await projections.start();
  readModel = new ReadModel(pg.db, store, projections);
});
afterAll(async () => {
  await projections?.stop();
  await store?.close();
  await pg?.close();
});

describe('ReadModel', () => {
  it('answers from the read model once the projection has the instance', async () => {
    const known = await create('i-known', 'Known', 'hash-known');
    expect(await readModel.caughtUp(known, 10_000)).toBe(true);

    // With its read-model row, which the request path reads no second time.
    expect(await readModel.findInstance('i-known')).toMatchObject({
      id: 'i-known',
      name: 'Known',
      view: { id: 'i-known', state: 'created' },
    });
    expect(await readModel.findInstance('KNOWN')).toMatchObject({ id: 'i-known', name: 'Known' });
    expect(await readModel.instanceIdByTokenHash('hash-known')).toBe('i-known');
    expect(await readModel.instanceByTokenHash('hash-known')).toMatchObject({
      id: 'i-known',
      name: 'Known',
      view: { id: 'i-known', state: 'created' },
    });
    expect(await readModel.instanceByTokenHash('hash-nobody')).toBeUndefined();
    expect(await readModel.tokenHashesOf('i-known')).toEqual(['hash-known']);
    expect(await readModel.instanceIds()).toEqual(['i-known']);
    expect((await readModel.instanceView('known'))?.state).toBe('created');
    expect(await readModel.sinkSettingsOf('i-known')).toEqual({ id: 'i-known', name: 'Known', sinks });
    expect(await readModel.countsByState()).toEqual(new Map([['created', 1]]));
    expect(await readModel.findInstance('nobody')).toBeUndefined();
    expect(await readModel.instanceIdByTokenHash('hash-nobody')).toBeUndefined();
  });

  describe('while the read model is behind the log (projection stopped)', () => {
    beforeAll(async () => {
      await projections.stop();
      await create('i-late', 'Late', 'hash-late');
      await create('i-revoked', 'Revoked', 'hash-revoked');
      await store.append('token-hash-revoked', [
        {
          type: 'InstanceTokenRevoked',
          data: { at: at(), instanceId: 'i-revoked', tokenHash: 'hash-revoked' },
        },
      ]);
      await create('i-gone', 'Gone', 'hash-gone');
      await store.append('instance-i-gone', [{ type: 'InstanceDeleted', data: { at: at(), by: 'admin' } }]);
      // A token stream whose last event is not an assignment, and one naming an instance with no stream.
      await store.append('token-hash-orphan', [
        {
          type: 'InstanceTokenAssigned',
          data: { at: at(), instanceId: 'i-never', tokenHash: 'hash-orphan' },
        },
      ]);
    });

    it('the read model itself does not have them', async () => {
      expect(await readModel.instanceView('i-late')).toBeUndefined();
      expect(await readModel.sinkSettingsOf('i-late')).toBeUndefined();
      expect(await readModel.instanceIds()).toEqual(['i-known']);
    });

    it('finds an instance by id from its stream; by name it cannot (names live in the read model)', async () => {
      expect(await readModel.findInstance('i-late')).toEqual({ id: 'i-late', name: 'i-late' });
      expect(await readModel.findInstance('Late')).toBeUndefined();
    });

    it('does not find an instance whose stream ends deleted', async () => {
      expect(await readModel.findInstance('i-gone')).toBeUndefined();
    });

    it("opens an instance with its token from the token's stream", async () => {
      expect(await readModel.instanceIdByTokenHash('hash-late')).toBe('i-late');
      expect(await readModel.instanceByTokenHash('hash-late')).toEqual({ id: 'i-late', name: 'i-late' });
    });

    it("opens a known instance with its row when only the token's row is missing (a rebuild under way)", async () => {
      await pg.db.query("DELETE FROM rm_instance_tokens WHERE token_hash = 'hash-known'");
      try {
        expect(await readModel.instanceByTokenHash('hash-known')).toMatchObject({
          id: 'i-known',
          name: 'Known',
          view: { state: 'created' },
        });
      } finally {
        await pg.db.query(
          "INSERT INTO rm_instance_tokens (token_hash, instance_id) VALUES ('hash-known', 'i-known')",
        );
      }
    });

    it('refuses a revoked token, a deleted instance and an instance that has no stream', async () => {
      expect(await readModel.instanceIdByTokenHash('hash-revoked')).toBeUndefined();
      expect(await readModel.instanceIdByTokenHash('hash-gone')).toBeUndefined();
      expect(await readModel.instanceByTokenHash('hash-revoked')).toBeUndefined();
      expect(await readModel.instanceByTokenHash('hash-gone')).toBeUndefined();
      expect(await readModel.instanceIdByTokenHash('hash-orphan')).toBeUndefined();
    });
  });
});

describe('InstanceSinkDirectory on the read model and the secrets', () => {
  it('gives an instance with its webhook secret; nothing for one without a secret or unknown', async () => {
    const secrets = new InstanceSecrets(pg.db, new SecretBox(randomBytes(32)));
    const directory = new InstanceSinkDirectory(readModel, secrets);
    expect(await directory.get('i-known')).toBeUndefined();
    await secrets.put('i-known', 'webhook_secret', 'whsec-known');
    expect(await directory.get('i-known')).toEqual({
      id: 'i-known',
      name: 'Known',
      webhookSecret: 'whsec-known',
      sinks,
    });
    // In the log, and with a secret, but not in the read model: the sinks wait for the projection.
    await secrets.put('i-late', 'webhook_secret', 'whsec-late');
    expect(await directory.get('i-late')).toBeUndefined();
    expect(await directory.get('nobody')).toBeUndefined();
  });
});
