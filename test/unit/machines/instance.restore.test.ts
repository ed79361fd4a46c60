/** Folding a stream, rebuilding the actor from it, and the boot-time `restore`. */
import { describe, expect, it } from 'vitest';
import { createActor } from 'xstate';
import { Harness, INSTANCE_ID, dataOf, typesOf } from './harness.ts';
import {
  apiStateOf,
  decide,
  evolveInstance,
  foldInstance,
  inputOf,
  instanceMachine,
  restoreSnapshot,
} from '../../../machines/instance/index.ts';
import {
  DEFAULT_ADVANCED_SETTINGS,
  DEFAULT_SINK_SETTINGS,
  type InstanceEventMap,
} from '../../../src/domain/events.ts';

const ACCOUNT = { jid: '5511988887777@s.whatsapp.net', pushName: 'João', lid: null };

/** Runs `script`, then "restarts the process": a new actor from the fold of the stream, same sessions. */
function restart(script: (h: Harness) => void): { before: Harness; after: Harness } {
  const before = new Harness();
  script(before);
  before.actor.stop();
  // The process died: its sockets with it.
  for (const c of before.fake.connections(INSTANCE_ID)) void c.close();
  const after = new Harness({
    connector: before.fake,
    restoreFrom: before.events,
    startAt: before.clock.now() + 5_000,
  });
  return { before, after };
}

function openPaired(h: Harness): void {
  h.dispatch({ type: 'connect' });
  h.onConnection((c) => c.issueQr());
  h.onConnection((c) => c.scan(ACCOUNT));
}

describe('restoreSnapshot', () => {
  it('rebuilds the folded state without opening a socket or starting a timer', () => {
    const { before, after } = restart(openPaired);
    expect(after.api()).toBe('open');
    expect(after.context).toEqual(before.context);
    expect(before.fake.liveCount(INSTANCE_ID)).toBe(0);
    const opened = before.fake.openCount(INSTANCE_ID);
    after.advance(600_000);
    expect(after.fake.openCount(INSTANCE_ID)).toBe(opened);
  });

  it('a deleted instance restores as done, and decide() records nothing for it', () => {
    const { after } = restart((h) => h.dispatch({ type: 'delete' }));
    expect(after.snapshot.status).toBe('done');
    for (const type of ['connect', 'logout', 'delete', 'removeProxy', 'restore'] as const) {
      expect(decide(after.snapshot, { type, at: after.at() }).emitted).toEqual([]);
    }
  });
});

describe('restore at boot', () => {
  it('a paired instance that was open reconnects without a QR', () => {
    const { after } = restart(openPaired);
    const emitted = after.dispatch({ type: 'restore' });
    expect(emitted).toEqual([
      { type: 'ConnectionStarting', data: { at: after.at(), trigger: 'restore', attempt: 1 } },
    ]);
    expect(after.fake.live(INSTANCE_ID).options.paired).toBe(true);
    after.onConnection((c) => c.resume());
    expect(after.api()).toBe('open');
    expect(after.fake.connections(INSTANCE_ID).at(-1)?.qrCount).toBe(0);
    after.expectFoldMatches();
  });

  it('a paired instance that was waiting for a retry reconnects at once', () => {
    const { after } = restart((h) => {
      openPaired(h);
      h.onConnection((c) => c.closeWith(428));
    });
    expect(after.snapshot.value).toBe('backoff');
    expect(typesOf(after.dispatch({ type: 'restore' }))).toEqual(['ConnectionStarting']);
    expect(after.fake.liveCount(INSTANCE_ID)).toBe(1);
  });

  it('a never-paired instance that was showing a QR stays put (no QR storm)', () => {
    const { after } = restart((h) => {
      h.dispatch({ type: 'connect' });
      h.onConnection((c) => c.issueQr());
    });
    expect(after.api()).toBe('qr');
    const emitted = after.dispatch({ type: 'restore' });
    expect(emitted).toEqual([
      {
        type: 'ConnectionClosed',
        data: { at: after.at(), code: null, reason: 'shutdown', willReconnect: false, retryInMs: null },
      },
    ]);
    expect(after.api()).toBe('disconnected');
    expect(after.fake.liveCount(INSTANCE_ID)).toBe(0);
    after.expectFoldMatches();
  });

  it('a clean shutdown is resumed on the next boot', () => {
    const { before, after } = restart((h) => {
      openPaired(h);
      expect(dataOf(h.dispatch({ type: 'shutdown' }), 'ConnectionClosed').reason).toBe('shutdown');
      expect(h.api()).toBe('disconnected');
      expect(h.fake.liveCount(INSTANCE_ID)).toBe(0);
    });
    expect(before.context.paired).toBe(true);
    expect(dataOf(after.dispatch({ type: 'restore' }), 'ConnectionStarting').trigger).toBe('restore');
    after.onConnection((c) => c.resume());
    expect(after.api()).toBe('open');
  });

  it('a close the runtime recorded itself at boot (shutdown) is resumed the same way', () => {
    const before = new Harness();
    openPaired(before);
    before.actor.stop();
    for (const c of before.fake.connections(INSTANCE_ID)) void c.close();
    const shutdown: { type: 'ConnectionClosed'; data: InstanceEventMap['ConnectionClosed'] } = {
      type: 'ConnectionClosed',
      data: { at: before.at(), code: null, reason: 'shutdown', willReconnect: false, retryInMs: null },
    };
    const after = new Harness({ connector: before.fake, restoreFrom: [...before.events, shutdown] });
    expect(after.api()).toBe('disconnected');
    expect(typesOf(after.dispatch({ type: 'restore' }))).toEqual(['ConnectionStarting']);
    expect(after.fake.liveCount(INSTANCE_ID)).toBe(1);
  });

  it.each([
    ['created', (_h: Harness) => undefined],
    ['disconnected by the user', (h: Harness) => (openPaired(h), h.dispatch({ type: 'disconnect' }))],
    ['replaced (440)', (h: Harness) => (openPaired(h), h.onConnection((c) => c.closeWith(440)))],
    ['logged out', (h: Harness) => (openPaired(h), h.dispatch({ type: 'logout' }))],
  ])('an instance %s stays where it was', (_name, script) => {
    const { after } = restart(script);
    const api = after.api();
    expect(after.dispatch({ type: 'restore' })).toEqual([]);
    expect(after.api()).toBe(api);
    expect(after.fake.liveCount(INSTANCE_ID)).toBe(0);
  });
});

describe('foldInstance / evolveInstance', () => {
  const created: InstanceEventMap['InstanceCreated'] = {
    at: '2026-01-01T00:00:00.000Z',
    instanceId: 'x',
    name: 'x',
    createdBy: 'admin',
    advancedSettings: DEFAULT_ADVANCED_SETTINGS,
    sinks: DEFAULT_SINK_SETTINGS,
    proxy: null,
  };

  it('needs InstanceCreated first', () => {
    expect(() => foldInstance([])).toThrow(/empty/);
    expect(() => foldInstance([{ type: 'ProxyRemoved', data: { at: created.at } }])).toThrow(
      /InstanceCreated/,
    );
  });

  it('ignores event types it does not know, and everything after InstanceDeleted', () => {
    const start = evolveInstance(undefined, { type: 'InstanceCreated', data: created });
    expect(evolveInstance(start, { type: 'SomethingNew', data: {} })).toBe(start);
    const deleted = evolveInstance(start, { type: 'InstanceDeleted', data: { at: created.at, by: 'admin' } });
    expect(deleted.apiState).toBe('deleted');
    expect(
      evolveInstance(deleted, {
        type: 'ConnectionStarting',
        data: { at: created.at, trigger: 'connect', attempt: 1 },
      }),
    ).toBe(deleted);
  });

  it('applies the configuration it is given (QRCODE_MAX_COUNT from the environment)', () => {
    expect(
      foldInstance([{ type: 'InstanceCreated', data: created }], { qrMaxCount: 2 }).context.qrMaxCount,
    ).toBe(2);
    expect(foldInstance([{ type: 'InstanceCreated', data: created }]).context.qrMaxCount).toBe(5);
  });

  it('gives a snapshot from which the machine goes on as if it had never stopped', () => {
    const h = new Harness();
    openPaired(h);
    const folded = foldInstance(h.events);
    const snapshot = restoreSnapshot(instanceMachine, folded);
    const actor = createActor(instanceMachine, { snapshot, input: inputOf(folded.context) }).start();
    actor.send({ type: 'wa.closed', code: 440, at: h.at() });
    expect(apiStateOf(actor.getSnapshot())).toBe('disconnected');
    expect(actor.getSnapshot().context.lastClose).toMatchObject({ code: 440, reason: 'replaced' });
    actor.stop();
  });
});
