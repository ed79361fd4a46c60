/**
 * Replayed state equals live state: random histories of commands (HTTP) and phone-side signals (fake
 * connector) drive the real runtime; after every step the history replayed from the log must reach the
 * live actor's state, and at the end the replayed context must equal the live actor's context exactly and
 * the sequence of states the live actor went through (inspection timeline) must be the one replayed.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiStateOf } from '../../../machines/instance/index.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { QRCODE_MAX_COUNT: '3' } });
});
afterAll(async () => {
  await t?.stop();
});

type Step =
  | { kind: 'connect' }
  | { kind: 'disconnect' }
  | { kind: 'logout' }
  | { kind: 'settings'; readMessages: boolean }
  | { kind: 'qr' }
  | { kind: 'scan'; restart: boolean }
  | { kind: 'close'; code: number | null };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Step>({ kind: 'connect' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'disconnect' }) },
  { weight: 2, arbitrary: fc.constant<Step>({ kind: 'logout' }) },
  { weight: 1, arbitrary: fc.boolean().map<Step>((readMessages) => ({ kind: 'settings', readMessages })) },
  { weight: 2, arbitrary: fc.constant<Step>({ kind: 'qr' }) },
  { weight: 3, arbitrary: fc.boolean().map<Step>((restart) => ({ kind: 'scan', restart })) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom<number | null>(515, 428, 408, 500, 401, 440, 403, null)
      .map<Step>((code) => ({ kind: 'close', code })),
  },
);

interface HistoryBody {
  entries: Array<{ state: string; type: string }>;
  current: { state: string; context: Record<string, unknown> };
}

let serial = 0;

async function replayed(id: string): Promise<HistoryBody> {
  const r = await t.request<HistoryBody>('GET', `/instance/${id}/history?limit=1000`);
  expect(r.status).toBe(200);
  return r.body;
}

function liveState(id: string): string | undefined {
  const snapshot = t.zapwire.runtime.liveSnapshot(id);
  return snapshot ? apiStateOf(snapshot) : undefined;
}

/** Waits until the log's replay, the live actor and the read model agree; fails if they never do. */
async function converged(id: string): Promise<HistoryBody> {
  return eventually(async () => {
    const history = await replayed(id);
    const live = liveState(id) ?? 'created';
    const view = await t.request('GET', `/instance/info/${id}`);
    return history.current.state === live && view.body['state'] === live ? history : undefined;
  }, 5_000);
}

async function apply(id: string, step: Step): Promise<void> {
  const connection = t.fake.connection(id);
  switch (step.kind) {
    case 'connect':
      await t.request('POST', '/instance/connect', { body: { instanceName: id } });
      return;
    case 'disconnect':
      await t.request('POST', '/instance/disconnect', { body: { instanceName: id } });
      return;
    case 'logout':
      await t.request('POST', '/instance/logout', { body: { instanceName: id } });
      return;
    case 'settings':
      await t.request('PUT', `/instance/${id}/advanced-settings`, {
        body: { readMessages: step.readMessages },
      });
      return;
    case 'qr':
      if (connection?.state === 'connecting' || connection?.state === 'qr') connection.issueQr();
      return;
    case 'scan':
      // The phone needs a QR on screen: show one first when the connection has none yet.
      if (connection?.state === 'connecting') connection.issueQr();
      if (connection?.state === 'qr') connection.scan(undefined, { restart: step.restart });
      return;
    case 'close':
      if (connection?.live) connection.closeWith(step.code);
      return;
  }
}

function dedupe(states: readonly string[]): string[] {
  return states.filter((s, i) => i === 0 || s !== states[i - 1]);
}

describe('replay equals live', () => {
  it('for random histories of commands and connection signals', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArbitrary, { minLength: 1, maxLength: 14 }), async (steps) => {
        const name = `rel-${++serial}`;
        const created = await t.request('POST', '/instance/create', { body: { name } });
        expect(created.status).toBe(201);
        const id = created.body['id'] as string;
        for (const step of steps) {
          await apply(id, step);
          await converged(id);
        }
        const history = await converged(id);
        const snapshot = t.zapwire.runtime.liveSnapshot(id);
        if (snapshot) {
          const { context } = snapshot;
          expect(history.current.context).toEqual({
            name: context.name,
            createdAt: context.createdAt,
            paired: context.paired,
            jid: context.jid,
            pushName: context.pushName,
            lid: context.lid,
            connectionSeq: context.connectionSeq,
            reconnectAttempt: context.reconnectAttempt,
            qrCount: context.qrCount,
            openedAt: context.openedAt,
            lastClose: context.lastClose,
            advancedSettings: context.advancedSettings,
            sinks: context.sinks,
            proxy: context.proxy,
          });
          // The states the live actor went through, as the inspection observer saw them, are the states
          // the replay goes through (after the actor started: its first entry is where it was restored).
          const timeline = (
            await t.request<{ timeline: Array<{ state: string; event: string }> }>(
              'GET',
              `/debug/instances/${id}/state`,
            )
          ).body.timeline;
          const liveStates = dedupe(timeline.map((e) => e.state));
          const replayedStates = dedupe(history.entries.map((e) => e.state));
          expect(liveStates.length).toBeGreaterThan(0);
          const start = replayedStates.lastIndexOf(
            liveStates[0] ?? '',
            replayedStates.length - liveStates.length,
          );
          expect(replayedStates.slice(start)).toEqual(liveStates);
        }
      }),
      {
        numRuns: 30,
        endOnFailure: true,
        // Always covered, whatever the seed: pairing then each way a session ends or restarts.
        examples: [
          [
            [
              { kind: 'connect' },
              { kind: 'scan', restart: true },
              { kind: 'logout' },
              { kind: 'connect' },
              { kind: 'qr' },
            ],
          ],
          [
            [
              { kind: 'connect' },
              { kind: 'scan', restart: false },
              { kind: 'close', code: 401 },
              { kind: 'connect' },
            ],
          ],
          [
            [
              { kind: 'connect' },
              { kind: 'scan', restart: false },
              { kind: 'close', code: 428 },
              { kind: 'disconnect' },
            ],
          ],
          [
            [
              { kind: 'connect' },
              { kind: 'scan', restart: false },
              { kind: 'close', code: 440 },
              { kind: 'connect' },
            ],
          ],
          [
            [
              { kind: 'connect' },
              { kind: 'qr' },
              { kind: 'qr' },
              { kind: 'qr' },
              { kind: 'qr' },
              { kind: 'connect' },
            ],
          ],
        ],
      },
    );
  });
});
