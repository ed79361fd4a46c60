/**
 * Shutdown (#14): a POST /instance/pair waiting for WhatsApp's code must not hold the HTTP server open until
 * its timeout. The waiting request answers at once with a 503 that says why, and the app stops in seconds.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

describe('shutdown with a pairing-code request waiting', () => {
  it('answers it 503 with the reason and stops within seconds', async () => {
    t = await startTestApp();
    const base = await t.zapwire.app.listen({ host: '127.0.0.1', port: 0 });
    const token = 'pairing-shutdown-token-abcdef';
    const created = await t.request('POST', '/instance/create', { body: { name: 'pairs', token } });
    expect(created.status).toBe(201);
    const id = created.body['id'] as string;
    expect((await t.request('POST', '/instance/connect', { apikey: token, body: {} })).status).toBe(200);
    // WhatsApp never answers this phone's pairing request.
    const connection = await eventually(() => t!.fake.connection(id));
    connection.requestPairingCode = () => new Promise<string>(() => undefined);

    const pending = fetch(`${base}/instance/pair`, {
      method: 'POST',
      headers: { apikey: token, 'content-type': 'application/json' },
      body: JSON.stringify({ phone: '5511999990000' }),
    });
    // The request is waiting (the default wait is 20 s).
    await new Promise((r) => setTimeout(r, 300));
    const began = Date.now();
    const stopping = t.zapwire.stop();
    const response = await pending;
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('ZW_ERR_UNAVAILABLE');
    expect(body.error.message).toMatch(/shutting down/);
    await stopping;
    expect(Date.now() - began).toBeLessThan(3_000);
  });

  it('answers a pairing request that arrives once the shutdown began the same way', async () => {
    t = await startTestApp();
    const token = 'pairing-late-token-abcdef';
    const created = await t.request('POST', '/instance/create', { body: { name: 'late', token } });
    expect(created.status).toBe(201);
    t.zapwire.runtime.beginShutdown();
    await expect(
      t.zapwire.runtime.commands.requestPairingCode(created.body['id'] as string, '5511999990000'),
    ).rejects.toMatchObject({ code: 'ZW_ERR_UNAVAILABLE', retryAfter: 5 });
  });
});
