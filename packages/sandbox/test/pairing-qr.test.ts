/**
 * Milestones 1–2: Noise handshake, QR refs and their rotation, the phone scanning a QR, the 515
 * restart, login and 'open' — raw Baileys on one side, the sandbox's records on the other.
 */
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { startSandbox, type Sandbox } from '../src/index.ts';
import { memoryAuth } from './support/baileys-auth.ts';
import { connectBaileys, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
const clients: BaileysClient[] = [];
const track = (c: BaileysClient): BaileysClient => (clients.push(c), c);

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await sandbox.close();
});

describe('QR pairing', () => {
  test('the server hands out six refs; Baileys rotates through them and gives up with 408', async () => {
    const client = track(connectBaileys(sandbox, { qrTimeoutMs: 120 }));
    const first = await client.qr();
    expect(sandbox.control.waitingForPairing()).toBe(1);
    const code = await client.closed(5_000);
    expect(code).toBe(408);
    const qrs = client.events
      .filter((e) => e.event === 'connection.update')
      .flatMap((e) => ('qr' in e.data && e.data.qr ? [e.data.qr] : []));
    expect(qrs).toHaveLength(6);
    expect(new Set(qrs.map((qr) => qr.split(',')[0])).size).toBe(6);
    // The QR carries the client's own keys: the phone checks them against the connection.
    const [, noiseKey, identityKey, advSecret] = first.split(',');
    expect(noiseKey).toBe(Buffer.from(client.auth.state.creds.noiseKey.public).toString('base64'));
    expect(identityKey).toBe(
      Buffer.from(client.auth.state.creds.signedIdentityKey.public).toString('base64'),
    );
    expect(advSecret).toBe(client.auth.state.creds.advSecretKey);
    await expect.poll(() => sandbox.control.waitingForPairing()).toBe(0);
  });

  test('the phone scans: pair-success, 515, then a login that reaches open', async () => {
    const alice = sandbox.control.createAccount({ name: 'Alice' });
    const pairing = track(connectBaileys(sandbox));
    const qr = await pairing.qr();
    const device = await sandbox.control.scanQr(alice.phoneNumber, qr);
    expect(device).toMatchObject({
      jid: `${alice.phoneNumber}:1@s.whatsapp.net`,
      lid: `${alice.lid.split('@')[0]}:1@lid`,
      keyIndex: 1,
    });

    await pairing.waitFor('connection.update', (u) => u.isNewLogin === true);
    const creds = await pairing.waitFor('creds.update', (u) => !!u.me);
    expect(creds.me).toMatchObject({ id: device.jid, lid: device.lid });
    expect(creds.platform).toBe('android');
    expect(await pairing.closed()).toBe(515);

    const client = track(connectBaileys(sandbox, { auth: pairing.auth }));
    await client.opened();
    expect(client.sock.user?.id).toBe(device.jid);
    // After login the client uploads its prekeys (5 here: the sandbox reports one left, see smallPreKeyBatches).
    await expect.poll(() => sandbox.control.devices(alice.phoneNumber)[0]?.preKeysUploaded).toBe(5);
    expect(sandbox.control.devices(alice.phoneNumber)[0]?.online).toBe(true);
    const log = sandbox.control.log(device.jid);
    expect(log.some((s) => s.dir === 'in' && s.tag === 'iq' && s.attrs.xmlns === 'passive')).toBe(true);
    expect(log.some((s) => s.dir === 'out' && s.tag === 'ib')).toBe(true);
  });

  test('a client with routing info (the ED preamble before the WA header) logs in too', async () => {
    const erin = sandbox.control.createAccount({ name: 'Erin' });
    const pairing = track(connectBaileys(sandbox));
    await sandbox.control.scanQr(erin.phoneNumber, await pairing.qr());
    expect(await pairing.closed()).toBe(515);
    pairing.auth.state.creds.routingInfo = Buffer.from('sandbox-routing-info');
    const client = track(connectBaileys(sandbox, { auth: pairing.auth }));
    await client.opened();
  });

  test('with the real server count, a first login uploads 812 prekeys', async () => {
    const faithful = await startSandbox();
    try {
      const bob = faithful.control.createAccount({ name: 'Bob' });
      const pairing = connectBaileys(faithful);
      await faithful.control.scanQr(bob.phoneNumber, await pairing.qr());
      expect(await pairing.closed()).toBe(515);
      const client = connectBaileys(faithful, { auth: pairing.auth });
      await client.opened();
      expect(faithful.control.devices(bob.phoneNumber)[0]?.preKeysUploaded).toBe(812);
      await client.end();
    } finally {
      await faithful.close();
    }
  });

  test('a QR is only accepted for the connection that showed it', async () => {
    const carol = sandbox.control.createAccount();
    const client = track(connectBaileys(sandbox));
    const qr = await client.qr();
    const [ref, , identity, adv, platform] = qr.split(',');
    const forged = [ref, Buffer.alloc(32, 7).toString('base64'), identity, adv, platform].join(',');
    await expect(sandbox.control.scanQr(carol.phoneNumber, forged)).rejects.toMatchObject({ status: 400 });
    await expect(
      sandbox.control.scanQr(carol.phoneNumber, 'https://wa.me/settings/linked_devices#2@nope,a,b,c,1'),
    ).rejects.toMatchObject({
      status: 404,
    });
    expect(sandbox.control.devices(carol.phoneNumber)).toHaveLength(0);
    await client.end();
  });

  test('a socket that speaks garbage is dropped; the server keeps serving others', async () => {
    const raw = new WebSocket(sandbox.wsUrl);
    await once(raw, 'open');
    raw.send(Buffer.from('WA\x06\x03\x00\x00\x05hello'));
    const [code] = (await once(raw, 'close')) as [number];
    expect(code).toBe(1006); // terminated without a close frame
    const client = track(connectBaileys(sandbox));
    await client.qr();
    await client.end();
  });

  test('credentials the server does not know are refused with 401', async () => {
    const auth = memoryAuth();
    auth.state.creds.me = { id: '99000000001:3@s.whatsapp.net', name: 'ghost' };
    const client = track(connectBaileys(sandbox, { auth }));
    expect(await client.closed()).toBe(401);
  });
});
