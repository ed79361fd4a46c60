/**
 * Finding 2: unknown keys in bodies are refused (400 naming the key) and never stored; settings events
 * carry known keys only, and the machine and the projection drop unknown keys found in old events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
let id = '';
beforeAll(async () => {
  t = await startTestApp();
  id = (await t.request<{ id: string }>('POST', '/instance/create', { body: { name: 'known' } })).body.id;
});
afterAll(async () => {
  await t?.stop();
});

describe('known keys only', () => {
  it.each([
    [
      'PUT',
      (): string => `/instance/${id}/advanced-settings`,
      { alwaysOnline: true, junk: 'x'.repeat(1000) },
    ],
    ['POST', (): string => '/instance/create', { name: 'extra', surprise: 1 }],
    [
      'POST',
      (): string => '/instance/create',
      { name: 'extra2', advancedSettings: { readMessages: true, junk: 1 } },
    ],
    ['PUT', (): string => `/instance/${id}/events`, { subscribe: ['MESSAGE'], junk: true }],
  ] as const)('%s %s with an unknown key → 400 naming it', async (method, url, body) => {
    const r = await t.request<{ error: { code: string; message: string } }>(method, url(), { body });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/unknown field "(junk|surprise)"/);
  });

  it('stores known keys only, even from an event that carried more', async () => {
    const appended = await t.zapwire.store.append(
      `instance-${id}`,
      [
        {
          type: 'AdvancedSettingsChanged',
          data: { at: new Date().toISOString(), settings: { rejectCall: true, junk: 'y'.repeat(100) } },
        },
      ],
      { expectedVersion: 'any' },
    );
    expect(await t.zapwire.projections.waitFor(appended.position)).toBe(true);
    const r = await t.request<Record<string, unknown>>('GET', `/instance/${id}/advanced-settings`);
    expect(r.body).not.toHaveProperty('junk');
    expect(r.body['rejectCall']).toBe(true);
    // The next change, decided by a machine that folded that event, writes known keys only.
    await t.zapwire.runtime.commands.changeAdvancedSettings(id, { alwaysOnline: true });
    const events = await t.zapwire.store.readStream(`instance-${id}`);
    expect(Object.keys(events.at(-1)!.data['settings'] as object).sort()).toEqual([
      'alwaysOnline',
      'ignoreGroups',
      'ignoreStatus',
      'msgRejectCall',
      'readMessages',
      'rejectCall',
    ]);
  });
});
