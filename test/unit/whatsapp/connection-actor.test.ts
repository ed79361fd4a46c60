import { describe, expect, it, vi } from 'vitest';
import { createActor, setup } from 'xstate';
import { DEFAULT_ADVANCED_SETTINGS } from '../../../src/domain/events.ts';
import type { WhatsAppConnectionInput } from '../../../machines/instance/index.ts';
import {
  createConnectionActor,
  signalToMachineEvent,
  type RoutedSignal,
} from '../../../src/whatsapp/connection-actor.ts';
import { FakeWhatsAppConnector } from '../../../src/whatsapp/fake.ts';
import type { WhatsAppConnection, WhatsAppConnector } from '../../../src/whatsapp/port.ts';

const INPUT: WhatsAppConnectionInput = {
  instanceId: 'a',
  connectionSeq: 3,
  paired: true,
  proxy: { host: 'p.example.test', port: 1080, protocol: 'socks5', hasPassword: true },
  settings: DEFAULT_ADVANCED_SETTINGS,
};

function start(connector: WhatsAppConnector = new FakeWhatsAppConnector({ autoResume: false })) {
  const routed: Array<[string, RoutedSignal]> = [];
  const failures: Array<[string, string, unknown]> = [];
  const logic = createConnectionActor(connector, (id, s) => routed.push([id, s]), {
    onCommandFailed: (id, command, error) => failures.push([id, command, error]),
  });
  const actor = createActor(logic, { input: INPUT }).start();
  return { actor, routed, failures };
}

describe('createConnectionActor', () => {
  it('opens one connection on start with what the input says, and closes it on stop', () => {
    const fake = new FakeWhatsAppConnector({ autoResume: false });
    const { actor } = start(fake);
    expect(fake.liveCount('a')).toBe(1);
    expect(fake.live('a').options).toEqual({
      instanceId: 'a',
      proxy: INPUT.proxy,
      settings: DEFAULT_ADVANCED_SETTINGS,
      paired: true,
    });
    actor.stop();
    expect(fake.liveCount('a')).toBe(0);
    expect(fake.hasSession('a')).toBe(false);
  });

  it('routes every signal, tagged with its connection, and never sends it back to the parent', () => {
    const fake = new FakeWhatsAppConnector({ autoResume: false });
    const routed: Array<[string, RoutedSignal]> = [];
    const received: string[] = [];
    const parent = setup({
      actors: { whatsappConnection: createConnectionActor(fake, (id, s) => routed.push([id, s])) },
    }).createMachine({
      invoke: { id: 'whatsappConnection', src: 'whatsappConnection', input: INPUT },
      on: { '*': { actions: ({ event }) => received.push(event.type) } },
    });
    const actor = createActor(parent).start();
    const c = fake.live('a');
    c.issueQr('q');
    c.closeWith(515);
    expect(routed).toEqual([
      ['a', { type: 'qr', code: 'q', expiresAt: expect.any(String), connectionSeq: 3 }],
      ['a', { type: 'closed', code: 515, connectionSeq: 3 }],
    ]);
    expect(received).toEqual([]);
    actor.stop();
  });

  it('drops what the old socket says once it is stopped', () => {
    const fake = new FakeWhatsAppConnector({ autoResume: false });
    const { actor, routed } = start(fake);
    const c = fake.live('a');
    // A connection whose close() does not silence it (a slow adapter) must still not reach the runtime.
    vi.spyOn(c, 'close').mockResolvedValue(undefined);
    actor.stop();
    c.issueQr();
    expect(routed).toEqual([]);
  });

  it('forwards the pairing-code request and settings; reports a failed request', async () => {
    const fake = new FakeWhatsAppConnector({ autoResume: false });
    const { actor, routed, failures } = start(fake);
    actor.send({ type: 'requestPairingCode', phone: '5511999999999' });
    expect(routed.map(([, s]) => s.type)).toEqual(['pairingCode']);
    actor.send({ type: 'applySettings', settings: { ...DEFAULT_ADVANCED_SETTINGS, ignoreGroups: true } });
    expect(fake.live('a').settings.ignoreGroups).toBe(true);
    const error = new Error('socket not ready');
    vi.spyOn(fake.live('a'), 'requestPairingCode').mockRejectedValue(error);
    actor.send({ type: 'requestPairingCode', phone: '1' });
    await vi.waitFor(() => expect(failures).toEqual([['a', 'requestPairingCode', error]]));
    actor.stop();
  });

  it('logout then stop: the socket closes only after the logout finished', async () => {
    const calls: string[] = [];
    let finishLogout: () => void = () => undefined;
    const connection: WhatsAppConnection = {
      sendText: async () => ({ id: '1', timestamp: '', status: '' }),
      requestPairingCode: async () => 'ABCD1234',
      rejectCall: async () => undefined,
      markRead: async () => undefined,
      sendPresence: async () => undefined,
      applySettings: () => undefined,
      logout: () => {
        calls.push('logout');
        return new Promise<void>((resolve) => (finishLogout = resolve));
      },
      close: async () => {
        calls.push('close');
      },
    };
    const connector: WhatsAppConnector = { open: () => connection, removeSession: async () => undefined };
    const { actor } = start(connector);
    actor.send({ type: 'logout' });
    actor.stop();
    await Promise.resolve();
    expect(calls).toEqual(['logout']);
    finishLogout();
    await vi.waitFor(() => expect(calls).toEqual(['logout', 'close']));
  });

  it('a failed logout still closes the socket', async () => {
    const calls: string[] = [];
    const fake = new FakeWhatsAppConnector({ autoResume: false });
    const { actor, failures } = start(fake);
    const c = fake.live('a');
    vi.spyOn(c, 'logout').mockRejectedValue(new Error('offline'));
    vi.spyOn(c, 'close').mockImplementation(async () => void calls.push('close'));
    actor.send({ type: 'logout' });
    actor.stop();
    await vi.waitFor(() => expect(calls).toEqual(['close']));
    expect(failures.map(([, command]) => command)).toEqual(['logout']);
  });
});

describe('signalToMachineEvent', () => {
  const at = '2026-01-01T00:00:00.000Z';
  it('maps connection signals to machine events, with time and connection', () => {
    expect(signalToMachineEvent({ type: 'qr', code: 'q', expiresAt: at, connectionSeq: 2 }, at)).toEqual({
      type: 'wa.qr',
      code: 'q',
      expiresAt: at,
      at,
      connectionSeq: 2,
    });
    expect(signalToMachineEvent({ type: 'opened', jid: 'j', pushName: null, connectionSeq: 1 }, at)).toEqual({
      type: 'wa.opened',
      jid: 'j',
      pushName: null,
      lid: null,
      at,
      connectionSeq: 1,
    });
    expect(signalToMachineEvent({ type: 'closed', code: null, connectionSeq: 1 }, at)).toEqual({
      type: 'wa.closed',
      code: null,
      at,
      connectionSeq: 1,
    });
    expect(
      signalToMachineEvent({ type: 'pairingCode', code: 'ABCD1234', phone: '55', connectionSeq: 1 }, at),
    ).toMatchObject({ type: 'wa.pairingCode', code: 'ABCD1234', phone: '55' });
  });

  it('leaves WhatsApp traffic to the wa- stream', () => {
    const event = {
      type: 'LabelUpdated',
      data: { at, labelId: '1', name: 'x', color: null, deleted: false },
    } as const;
    expect(signalToMachineEvent({ type: 'whatsapp', event, connectionSeq: 1 }, at)).toBeUndefined();
  });
});
