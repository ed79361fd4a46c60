/**
 * What the server's close codes do, through HTTP with real Baileys on the sandbox: 401 ends the session
 * (the next connect needs a QR), 440 stays down (no reconnect loop), 428 comes back by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { startE2eApp, eventually, status, waitForQr, waitForState, type E2eApp } from './harness.ts';

let sandbox: Sandbox;
let app: E2eApp;

beforeAll(async () => {
  sandbox = await startSandbox();
  app = await startE2eApp({ server: sandbox });
});

afterAll(async () => {
  await app?.stop();
  await sandbox?.close();
});

async function paired(name: string, phoneNumber: string): Promise<{ id: string; device: string }> {
  sandbox.control.createAccount({ phoneNumber, name });
  const created = await app.request<{ id: string }>('POST', '/instance/create', { body: { name } });
  await app.request('POST', '/instance/connect', { body: { instanceName: name } });
  const qr = await waitForQr(app, name);
  const device = await sandbox.control.scanQr(phoneNumber, qr.code);
  await waitForState(app, name, 'open');
  await eventually('device online', () => sandbox.control.devices(phoneNumber).find((d) => d.online));
  return { id: created.body.id, device: device.jid };
}

async function authRows(instanceId: string): Promise<number> {
  const { rows } = await app.zapwire.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM wa_auth_state WHERE instance_id = $1',
    [instanceId],
  );
  return rows[0]?.n ?? 0;
}

describe('close codes from the server', () => {
  it('401 (device removed): disconnected, session gone, the next connect shows a QR', async () => {
    const { id, device } = await paired('removed', '5511966660001');
    expect(await authRows(id)).toBeGreaterThan(0);
    expect(sandbox.control.kick(device, 'loggedOut')).toBe(true);
    const down = await waitForState(app, 'removed', 'disconnected');
    expect(down.loggedIn).toBe(false);
    expect(await authRows(id)).toBe(0);

    const waiting = sandbox.control.waitingForPairing();
    await app.request('POST', '/instance/connect', { body: { instanceName: 'removed' } });
    const qr = await waitForQr(app, 'removed');
    expect(qr.count).toBe(1);
    expect(sandbox.control.waitingForPairing()).toBe(waiting + 1);
    // Pair again with a fresh device.
    await sandbox.control.scanQr('5511966660001', qr.code);
    await waitForState(app, 'removed', 'open');
    expect(await authRows(id)).toBeGreaterThan(0);
  });

  it('440 (replaced): disconnected and stays so — no reconnect loop', async () => {
    const { id, device } = await paired('replaced', '5511966660002');
    const connectionsBefore = sandbox.control.connectionCount();
    expect(sandbox.control.kick(device, 'connectionReplaced')).toBe(true);
    await waitForState(app, 'replaced', 'disconnected');
    // Well past several reconnect backoffs (200 ms base in this app): nothing tried again.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect((await status(app, 'replaced')).state).toBe('disconnected');
    expect(sandbox.control.devices('5511966660002').every((d) => !d.online)).toBe(true);
    expect(sandbox.control.connectionCount()).toBe(connectionsBefore - 1);
    // The session is kept: a reconnect asked for by the user logs in without a QR.
    expect(await authRows(id)).toBeGreaterThan(0);
    await app.request('POST', '/instance/reconnect', { body: { instanceName: 'replaced' } });
    await waitForState(app, 'replaced', 'open');
  });

  it('428 (connection closed by the server): reconnects by itself with the saved session', async () => {
    const { device } = await paired('flaky', '5511966660003');
    expect(sandbox.control.kick(device, 'connectionClosed')).toBe(true);
    await eventually('the device is dropped', () =>
      sandbox.control.devices('5511966660003').every((d) => !d.online),
    );
    await eventually(
      'back online',
      () => sandbox.control.devices('5511966660003').some((d) => d.online),
      15_000,
    );
    await waitForState(app, 'flaky', 'open');
  });
});
