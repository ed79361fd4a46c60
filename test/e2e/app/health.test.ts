/**
 * Honest instance health, end to end with real Baileys on the sandbox: each fault the sandbox can put on a
 * linked device (mute, dropped pings, corrupted sessions), a stalled webhook receiver and a send
 * restriction is detected, reported by GET /instance/:id/health with the right reason, recorded as
 * HealthDegraded / HealingAttempted / HealthRestored in the instance's history, and healed, or flagged
 * `needsAttention` once healing used its budget. Intervals are shortened through configuration; nothing
 * here asserts a duration (the detection targets are measured by `npm run bench -- health`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '@zapwire/sandbox';
import { whatsappStream } from '../../../src/domain/events.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { eventually, startE2eApp, waitForQr, waitForState, type E2eApp } from './harness.ts';

interface LinkReport {
  link: string;
  state: string;
  figure: number | null;
  unit: string | null;
  since: string;
  reason: string | null;
}
interface Health {
  state: 'healthy' | 'degraded' | 'down';
  since: string;
  reason: string | null;
  needsAttention: boolean;
  links: LinkReport[];
  checkedAt: string | null;
}
interface HistoryEntry {
  type: string;
  data: Record<string, unknown>;
}

let sandbox: Sandbox;
let app: E2eApp;
let receiver: WebhookReceiver;

beforeAll(async () => {
  sandbox = await startSandbox();
  receiver = await WebhookReceiver.start();
  app = await startE2eApp({
    server: sandbox,
    env: {
      HEALTH_SWEEP_MS: '100',
      HEALTH_PING_INTERVAL_MS: '1000',
      HEALTH_PING_TIMEOUT_MS: '1500',
      HEALTH_PROBE_INTERVAL_MS: '2000',
      HEALTH_PROBE_TIMEOUT_MS: '2000',
      HEALTH_DECRYPT_WINDOW_MS: '8000',
      HEALTH_SINK_LAG_MS: '1500',
      HEALTH_HEAL_BUDGET: '2',
      HEALTH_HEAL_WINDOW_MS: '600000',
      WEBHOOK_TIMEOUT_MS: '30000',
    },
  });
}, 60_000);

afterAll(async () => {
  await app?.stop();
  await receiver?.close();
  await sandbox?.close();
});

async function paired(
  name: string,
  phoneNumber: string,
  connect: Record<string, unknown> = {},
): Promise<{ id: string; device: string }> {
  sandbox.control.createAccount({ phoneNumber, name });
  const created = await app.request<{ id: string }>('POST', '/instance/create', { body: { name } });
  await app.request('POST', '/instance/connect', { body: { instanceName: name, ...connect } });
  const qr = await waitForQr(app, name);
  const device = await sandbox.control.scanQr(phoneNumber, qr.code);
  await waitForState(app, name, 'open');
  return { id: created.body.id, device: device.jid };
}

async function health(id: string): Promise<Health> {
  const reply = await app.request<Health>('GET', `/instance/${id}/health`);
  expect(reply.status).toBe(200);
  return reply.body;
}

function link(h: Health, name: string): LinkReport {
  const found = h.links.find((l) => l.link === name);
  if (!found) throw new Error(`no link ${name} in ${JSON.stringify(h)}`);
  return found;
}

/** Healthy with the transport and the delivery probe measured ok. */
async function measuredHealthy(id: string, timeoutMs = 30_000): Promise<Health> {
  return eventually(
    'healthy, transport and delivery measured',
    async () => {
      const h = await health(id);
      return h.state === 'healthy' &&
        link(h, 'transport').state === 'ok' &&
        link(h, 'delivery').state === 'ok'
        ? h
        : undefined;
    },
    timeoutMs,
    100,
  );
}

async function history(id: string): Promise<HistoryEntry[]> {
  const reply = await app.request<{ entries: HistoryEntry[] }>('GET', `/instance/${id}/history?limit=1000`);
  expect(reply.status).toBe(200);
  return reply.body.entries;
}

async function recorded(
  id: string,
  type: string,
  match: (data: Record<string, unknown>) => boolean = () => true,
) {
  return eventually(
    `${type} recorded`,
    async () => (await history(id)).find((e) => e.type === type && match(e.data)),
    30_000,
    100,
  );
}

describe('instance health on the sandbox', () => {
  it('a healthy instance: every link measured, figures shown, the summary in status, listings and /health', async () => {
    const { id } = await paired('health-ok', '5511955550001');
    const h = await measuredHealthy(id);
    expect(h.reason).toBeNull();
    expect(h.needsAttention).toBe(false);
    expect(link(h, 'transport').figure).toEqual(expect.any(Number));
    expect(link(h, 'transport').unit).toBe('ms');
    expect(link(h, 'delivery').figure).toEqual(expect.any(Number));
    expect(link(h, 'verdicts').state).toBe('ok');

    const status = await app.request<{ health: { state: string } }>(
      'GET',
      '/instance/status?instanceName=health-ok',
    );
    expect(status.body.health.state).toBe('healthy');
    const all = await app.request<Array<{ name: string; health: { state: string } }>>('GET', '/instance/all');
    expect(all.body.find((i) => i.name === 'health-ok')?.health.state).toBe('healthy');
    const service = await app.request<{ instanceHealth: { healthy: number } }>('GET', '/health', {
      apikey: null,
    });
    expect(service.body.instanceHealth.healthy).toBeGreaterThanOrEqual(1);
    const metrics = await app.request<string>('GET', '/metrics');
    expect(metrics.body).toContain(`zapwire_instance_health{instance_id="${id}",needs_attention="false"} 0`);
    expect(metrics.body).toMatch(
      new RegExp(`zapwire_instance_health_link\\{instance_id="${id}",link="transport",unit="ms"\\} \\d+`),
    );
    expect(metrics.body).toContain(`zapwire_instance_health_link_ok{instance_id="${id}",link="delivery"} 1`);
    // The probe shows nothing to the user: no chat entry on the phone, no message event on the instance.
    expect(sandbox.control.received('5511955550001').filter((m) => m.text !== undefined)).toHaveLength(0);
  }, 90_000);

  it('mute healed by a reconnect: down with the delivery reason, a reconnect, healthy again; HEALTH reaches the webhook', async () => {
    const { id, device } = await paired('health-mute', '5511955550002', {
      webhookUrl: receiver.url('/mute'),
      subscribe: ['HEALTH'],
    });
    await measuredHealthy(id);
    sandbox.control.muteDevice(device, { untilReconnect: true });

    const degraded = await recorded(id, 'HealthDegraded', (d) => d['state'] === 'down');
    expect(String(degraded.data['reason'])).toMatch(/delivery probes/);
    const healing = await recorded(id, 'HealingAttempted', (d) => d['link'] === 'delivery');
    expect(healing.data).toMatchObject({ action: 'reconnect', exhausted: false, attempt: 1 });
    const restored = await recorded(id, 'HealthRestored');
    expect(String(restored.data['previousReason'])).toMatch(/delivery/);
    await measuredHealthy(id);

    await receiver.waitUntil(
      () => receiver.acceptedBodies('/mute').some((b) => b['event'] === 'HEALTH'),
      30_000,
      'a HEALTH event',
    );
    const events = receiver.acceptedBodies<{ event: string; data: Record<string, unknown> }>('/mute');
    expect(events.every((e) => e.event === 'HEALTH')).toBe(true);
    expect(events.map((e) => Object.keys(e.data).length > 0)).not.toContain(false);
  }, 120_000);

  it('mute that a reconnect does not fix: healing stops at its budget, needsAttention, no flapping; lifting it restores', async () => {
    const { id, device } = await paired('health-stuck', '5511955550003');
    await measuredHealthy(id);
    sandbox.control.muteDevice(device);

    const exhausted = await recorded(id, 'HealingAttempted', (d) => d['exhausted'] === true);
    expect(exhausted.data).toMatchObject({ action: 'reconnect', link: 'delivery', budget: 2 });
    const flagged = await eventually(
      'needsAttention shown',
      async () => {
        const h = await health(id);
        return h.needsAttention && h.state !== 'healthy' ? h : undefined;
      },
      30_000,
      100,
    );
    // The delivery link's reason: one probe unanswered, or several (whichever the last probe left).
    expect(flagged.reason).toMatch(/delivery probes? .*unanswered|none of \d+ delivery probes/);
    const all = await app.request<Array<{ name: string; health: { needsAttention: boolean } }>>(
      'GET',
      '/instance/all',
    );
    expect(all.body.find((i) => i.name === 'health-stuck')?.health.needsAttention).toBe(true);

    // Past the budget nothing more is tried: the count of reconnects stays where it is.
    const attempts = async (): Promise<number> =>
      (await history(id)).filter((e) => e.type === 'HealingAttempted' && e.data['exhausted'] === false)
        .length;
    const before = await attempts();
    expect(before).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    expect(await attempts()).toBe(before);

    sandbox.control.liftFault(device, 'mute');
    await recorded(id, 'HealthRestored');
    const h = await measuredHealthy(id);
    expect(h.needsAttention).toBe(false);
  }, 150_000);

  it('dropped pings: transport down with "no pong for", a reconnect heals it', async () => {
    const { id, device } = await paired('health-pings', '5511955550004');
    await measuredHealthy(id);
    sandbox.control.dropPings(device, { untilReconnect: true });

    const degraded = await recorded(id, 'HealthDegraded', (d) => String(d['reason']).includes('no pong'));
    expect(degraded.data['state']).toBe('down');
    const links = degraded.data['links'] as Array<{ link: string }>;
    expect(links.map((l) => l.link)).toContain('transport');
    const healing = await recorded(id, 'HealingAttempted', (d) => d['link'] === 'transport');
    expect(healing.data['action']).toBe('reconnect');
    await recorded(id, 'HealthRestored');
    await measuredHealthy(id);
  }, 120_000);

  it('corrupted sessions: the decryption share degrades the instance with one contact named; its session is reset', async () => {
    const { id, device } = await paired('health-decrypt', '5511955550005');
    const contact = sandbox.control.createAccount({ phoneNumber: '5511955559005', name: 'Sender' });
    await measuredHealthy(id);
    // A first message sets the session up; the next ones arrive damaged.
    await sandbox.control.sendText(contact.phoneNumber, '5511955550005', 'before');
    sandbox.control.corruptSessions(device, { messages: 6 });
    for (let i = 0; i < 4; i++)
      await sandbox.control.sendText(contact.phoneNumber, '5511955550005', `bad ${i}`);

    const degraded = await recorded(id, 'HealthDegraded', (d) =>
      String(d['reason']).includes('failed to decrypt'),
    );
    expect(degraded.data['state']).toBe('degraded');
    expect(String(degraded.data['reason'])).toMatch(/^\d+ of \d+ messages failed to decrypt in 8 s$/);
    expect(degraded.data['links']).toEqual([
      { link: 'decryption', state: 'degraded', reason: degraded.data['reason'] },
    ]);
    const reset = await recorded(id, 'HealingAttempted', (d) => d['action'] === 'resetSession');
    expect(String(reset.data['contact'])).toMatch(/5511955559005|@lid/);
    // Once the failures leave the window, the instance is healthy again.
    await recorded(id, 'HealthRestored');
  }, 120_000);

  it('a stalled webhook receiver: the pipeline link says how far behind the webhook is', async () => {
    const stalled = await WebhookReceiver.start();
    stalled.respond({ status: 200, delayMs: 120_000 });
    try {
      const { id } = await paired('health-sink', '5511955550006', {
        webhookUrl: stalled.url('/stall'),
        subscribe: ['ALL'],
      });
      const contact = sandbox.control.createAccount({ phoneNumber: '5511955559006', name: 'Busy' });
      for (let i = 0; i < 3; i++)
        await sandbox.control.sendText(contact.phoneNumber, '5511955550006', `m${i}`);
      const h = await eventually(
        'the pipeline link degraded',
        async () => {
          const now = await health(id);
          return link(now, 'pipeline').state === 'degraded' ? now : undefined;
        },
        30_000,
        100,
      );
      expect(h.state).toBe('degraded');
      expect(link(h, 'pipeline').reason).toMatch(/^webhook [\d,]+ events behind, oldest/);
      expect(link(h, 'pipeline').unit).toBe('events');
      expect(h.needsAttention).toBe(false);
    } finally {
      await stalled.close();
    }
  }, 120_000);

  it("WhatsApp's verdicts: SendingRestricted in the log degrades the instance until SendingResumed", async () => {
    const { id } = await paired('health-verdict', '5511955550007');
    await measuredHealthy(id);
    const at = new Date().toISOString();
    await app.zapwire.store.append(
      whatsappStream(id),
      [
        {
          type: 'SendingRestricted',
          data: { at, code: '463', reason: 'reachout timelock', retryAfterMs: 3_600_000 },
        },
      ],
      { expectedVersion: 'any' },
    );
    const h = await eventually(
      'verdicts degraded',
      async () => {
        const now = await health(id);
        return link(now, 'verdicts').state === 'degraded' ? now : undefined;
      },
      10_000,
      100,
    );
    expect(link(h, 'verdicts').reason).toMatch(
      /WhatsApp restricted sending \(463: reachout timelock, retry in (59|60) min\)/,
    );
    await recorded(id, 'HealthDegraded', (d) => String(d['reason']).includes('463'));
    await app.zapwire.store.append(
      whatsappStream(id),
      [{ type: 'SendingResumed', data: { at: new Date().toISOString() } }],
      { expectedVersion: 'any' },
    );
    await recorded(id, 'HealthRestored', (d) => String(d['previousReason']).includes('restricted sending'));
  }, 90_000);
});
