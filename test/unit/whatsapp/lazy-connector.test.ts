import { describe, expect, it } from 'vitest';
import { FakeWhatsAppConnector } from '../../../src/whatsapp/fake.ts';
import { lazyConnector } from '../../../src/whatsapp/lazy-connector.ts';
import type { ConnectionProbe, WhatsAppConnector, WhatsAppSignal } from '../../../src/whatsapp/port.ts';
import { DEFAULT_ADVANCED_SETTINGS } from '../../../src/domain/events.ts';

const options = { instanceId: 'i-1', proxy: null, settings: DEFAULT_ADVANCED_SETTINGS, paired: false };

function deferredLoad(fake: FakeWhatsAppConnector): {
  load: () => Promise<FakeWhatsAppConnector>;
  loads: () => number;
  release: () => void;
} {
  let count = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    load: async () => {
      count += 1;
      await gate;
      return fake;
    },
    loads: () => count,
    release: () => release(),
  };
}

describe('lazyConnector', () => {
  it("exposes the real connection's probe once the adapter has loaded (health measures through it)", async () => {
    const fake = new FakeWhatsAppConnector();
    const probe: ConnectionProbe = {
      ping: async () => 1,
      probeDelivery: async () => 1,
      decryption: () => ({ decrypted: 0, failed: 0, failedBySender: new Map() }),
      resetSession: async () => undefined,
    };
    const withProbe: WhatsAppConnector = {
      open: (opts, listener) => Object.assign(fake.open(opts, listener), { probe }),
      removeSession: (id) => fake.removeSession(id),
    };
    const connection = lazyConnector(async () => withProbe).open(options, () => undefined);
    expect(connection.probe).toBeUndefined();
    await new Promise((r) => setTimeout(r, 0));
    expect(connection.probe).toBe(probe);
  });

  it('loads nothing until a connection is opened, then loads once', async () => {
    const fake = new FakeWhatsAppConnector();
    const gate = deferredLoad(fake);
    const connector = lazyConnector(gate.load);
    expect(gate.loads()).toBe(0);
    connector.open(options, () => undefined);
    connector.open({ ...options, instanceId: 'i-2' }, () => undefined);
    gate.release();
    await new Promise((r) => setTimeout(r, 0));
    expect(gate.loads()).toBe(1);
    expect(fake.connection('i-1')).toBeDefined();
    expect(fake.connection('i-2')).toBeDefined();
  });

  it('hands calls made before the load to the real connection, in order', async () => {
    const fake = new FakeWhatsAppConnector();
    const gate = deferredLoad(fake);
    const connection = lazyConnector(gate.load).open(options, () => undefined);
    connection.applySettings({ ...DEFAULT_ADVANCED_SETTINGS, alwaysOnline: true });
    const pairing = connection.requestPairingCode('5511999999999');
    connection.applySettings({ ...DEFAULT_ADVANCED_SETTINGS, rejectCall: true });
    gate.release();
    expect(await pairing).toMatch(/^[A-Z0-9]{8}$/);
    expect(fake.connection('i-1')!.commands.map((c) => c.type)).toEqual([
      'applySettings',
      'requestPairingCode',
      'applySettings',
    ]);
  });

  it('a connection closed before the load is closed as soon as it exists', async () => {
    const fake = new FakeWhatsAppConnector();
    const gate = deferredLoad(fake);
    const connection = lazyConnector(gate.load).open(options, () => undefined);
    const closing = connection.close();
    gate.release();
    await closing;
    expect(fake.connection('i-1')).toBeUndefined();
  });

  it('a failure to load closes the connection with the reason, and calls reject', async () => {
    const signals: WhatsAppSignal[] = [];
    const connection = lazyConnector(() => Promise.reject(new Error('module missing'))).open(options, (s) =>
      signals.push(s),
    );
    await expect(connection.sendText('5511@s.whatsapp.net', 'hi')).rejects.toThrow('module missing');
    expect(signals).toEqual([
      { type: 'closed', code: null, message: 'the WhatsApp adapter could not load: module missing' },
    ]);
    await connection.close();
  });
});
