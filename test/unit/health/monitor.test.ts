/**
 * The monitor's rules with a scripted connection probe (the port; the Baileys probe behind it is tested
 * for real in test/e2e/app/health.test.ts): what is recorded when, the heal budget, needsAttention, and
 * reading WhatsApp's verdicts from appended events.
 */
import { describe, expect, it } from 'vitest';
import { HealthMonitor, type HealthActions, type HealthSource } from '../../../src/health/monitor.ts';
import { DEFAULT_HEALTH_SETTINGS, type HealthSettings } from '../../../src/health/types.ts';
import type { ConnectionProbe, DecryptionCounts } from '../../../src/whatsapp/port.ts';
import type { NewEvent } from '../../../src/store/port.ts';

class ScriptedProbe implements ConnectionProbe {
  pong = true;
  delivered = true;
  counts: { decrypted: number; failed: number; failedBySender: Map<string, number> } = {
    decrypted: 0,
    failed: 0,
    failedBySender: new Map(),
  };
  resets: string[] = [];
  ping(): Promise<number> {
    return this.pong ? Promise.resolve(12) : Promise.reject(new Error('no answer'));
  }
  probeDelivery(): Promise<number> {
    return this.delivered ? Promise.resolve(40) : Promise.reject(new Error('no answer'));
  }
  decryption(): DecryptionCounts {
    return this.counts;
  }
  resetSession(contact: string): Promise<void> {
    this.resets.push(contact);
    return Promise.resolve();
  }
}

const settings: HealthSettings = {
  ...DEFAULT_HEALTH_SETTINGS,
  pingIntervalMs: 1_000,
  pingTimeoutMs: 500,
  probeIntervalMs: 10_000,
  probeTimeoutMs: 1_000,
  decryptWindowMs: 60_000,
  healBudget: 2,
  healWindowMs: 600_000,
};

function setup(overrides: Partial<HealthSettings> = {}) {
  let now = 1_000_000;
  let heldRestriction: { code: string; reason: string; until: number } | undefined;
  let probe = new ScriptedProbe();
  let open = true;
  const recorded: NewEvent[] = [];
  const reconnects: string[] = [];
  const source: HealthSource = {
    openInstances: () => (open ? ['i1'] : []),
    probe: () => probe,
    pipeline: () => ({
      mailboxBusySince: undefined,
      oldestAppendStartedAt: undefined,
      lastAppendLatencyMs: 3,
    }),
    sinkLags: () => [],
    restriction: () => heldRestriction,
  };
  const actions: HealthActions = {
    record: async (_id, events) => {
      recorded.push(...events);
    },
    reconnect: async (id) => {
      reconnects.push(id);
    },
    restartActor: async () => undefined,
    warn: () => undefined,
  };
  const monitor = new HealthMonitor({ ...settings, ...overrides }, source, actions, {
    now: () => now,
    random: () => 0,
  });
  /** Advances the clock in sweep steps, letting the probes' promises settle. */
  async function run(ms: number): Promise<void> {
    const end = now + ms;
    while (now < end) {
      now += 100;
      monitor.sweep();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
  }
  return {
    monitor,
    recorded,
    reconnects,
    run,
    get probe() {
      return probe;
    },
    /** A reconnect: the instance drops out of `open`, then comes back with a new connection. */
    async reconnect(next = new ScriptedProbe()) {
      open = false;
      await run(200);
      probe = next;
      open = true;
    },
    types: () => recorded.map((e) => e.type),
    /** The outbox holds (or no longer holds) a restriction, as after a restart. */
    holdRestriction(held: { code: string; reason: string; until: number } | undefined) {
      heldRestriction = held;
    },
    get now() {
      return now;
    },
  };
}

describe('HealthMonitor', () => {
  it('a working connection is healthy, with figures, and records nothing', async () => {
    const t = setup();
    expect(t.monitor.health('i1', 'open')).toMatchObject({ state: 'healthy', reason: 'not measured yet' });
    t.monitor.sweep();
    expect(t.monitor.health('i1', 'open').reason).toBe('not measured yet: transport, delivery');
    await t.run(3_000);
    expect(t.monitor.health('i1', 'open').reason).toBeNull();
    const h = t.monitor.health('i1', 'open');
    expect(h.state).toBe('healthy');
    expect(h.links.find((l) => l.link === 'transport')).toMatchObject({
      state: 'ok',
      figure: 12,
      unit: 'ms',
    });
    expect(h.links.find((l) => l.link === 'delivery')).toMatchObject({ state: 'ok', figure: 40 });
    expect(t.recorded).toEqual([]);
    expect(t.monitor.counts()).toEqual({ healthy: 1, degraded: 0, down: 0, needsAttention: 0 });
  });

  it('a missed pong is down at once, healed by one reconnect, restored after two pongs on the new connection', async () => {
    const t = setup();
    await t.run(2_000);
    t.probe.pong = false;
    await t.run(1_500);
    expect(t.monitor.health('i1', 'open').reason).toMatch(/^no pong for \d+ s$/);
    expect(t.types()).toEqual(['HealthDegraded', 'HealingAttempted']);
    expect(t.reconnects).toEqual(['i1']);
    await t.reconnect();
    await t.run(3_000);
    expect(t.types()).toEqual(['HealthDegraded', 'HealingAttempted', 'HealthRestored']);
    expect(t.monitor.health('i1', 'open').state).toBe('healthy');
  });

  it('one unanswered probe is a doubt, not recorded; the second miss is down', async () => {
    const t = setup();
    await t.run(2_000);
    t.probe.delivered = false;
    // The first miss re-probes at once; both fail: down.
    await t.run(10_000);
    const degraded = t.recorded.find((e) => e.type === 'HealthDegraded');
    expect(degraded?.data).toMatchObject({ state: 'down' });
    expect(String(degraded?.data['reason'])).toMatch(/none of 2 delivery probes/);
  });

  it('healing stops at its budget: needsAttention, no more reconnects, no flapping, cleared when the cause goes', async () => {
    const t = setup();
    await t.run(2_000);
    t.probe.delivered = false;
    await t.run(12_000);
    for (let i = 0; i < 4; i++) {
      const broken = new ScriptedProbe();
      broken.delivered = false;
      await t.reconnect(broken);
      await t.run(5_000);
    }
    expect(t.reconnects).toHaveLength(2);
    const exhausted = t.recorded.filter((e) => e.type === 'HealingAttempted' && e.data['exhausted'] === true);
    expect(exhausted).toHaveLength(1);
    expect(t.monitor.health('i1', 'open')).toMatchObject({ state: 'down', needsAttention: true });
    expect(t.types().filter((x) => x === 'HealthRestored')).toHaveLength(0);
    expect(t.monitor.counts().needsAttention).toBe(1);

    t.probe.delivered = true;
    await t.run(12_000);
    expect(t.types().at(-1)).toBe('HealthRestored');
    expect(t.monitor.health('i1', 'open')).toMatchObject({ state: 'healthy', needsAttention: false });
  });

  it('decryption failures concentrated on one contact degrade the instance and reset that session once per window', async () => {
    const t = setup();
    await t.run(1_000);
    t.probe.counts = {
      decrypted: 2,
      failed: 5,
      failedBySender: new Map([
        ['5511@s.whatsapp.net', 4],
        ['5522@s.whatsapp.net', 1],
      ]),
    };
    await t.run(5_000);
    const h = t.monitor.health('i1', 'open');
    expect(h.state).toBe('degraded');
    expect(h.reason).toBe('5 of 7 messages failed to decrypt in 1 min');
    expect(t.probe.resets).toEqual(['5511@s.whatsapp.net']);
    const attempt = t.recorded.find((e) => e.type === 'HealingAttempted');
    expect(attempt?.data).toMatchObject({ action: 'resetSession', contact: '5511@s.whatsapp.net' });
    // Out of the window, the share is back to nothing.
    await t.run(61_000);
    expect(t.monitor.health('i1', 'open').state).toBe('healthy');
    expect(t.types().at(-1)).toBe('HealthRestored');
  });

  it("reads WhatsApp's verdicts from appended events: SendingRestricted degrades, SendingResumed restores", async () => {
    const t = setup();
    await t.run(1_000);
    t.monitor.observe('i1', 'SendingRestricted', {
      at: new Date(1_001_000).toISOString(),
      code: '463',
      reason: 'reachout timelock',
      retryAfterMs: 600_000,
    });
    const h = t.monitor.health('i1', 'open');
    expect(h.state).toBe('degraded');
    expect(h.reason).toBe('WhatsApp restricted sending (463: reachout timelock, retry in 10 min)');
    expect(t.recorded.at(-1)?.type).toBe('HealthDegraded');
    t.monitor.observe('i1', 'MessageReceived', {});
    expect(t.monitor.health('i1', 'open').state).toBe('degraded');
    t.monitor.observe('i1', 'SendingResumed', {});
    expect(t.monitor.health('i1', 'open').state).toBe('healthy');
    expect(t.recorded.at(-1)?.type).toBe('HealthRestored');
  });

  it('reads back a restriction the outbox holds from before a restart, until SendingResumed', async () => {
    const t = setup();
    await t.run(1_000);
    expect(t.monitor.health('i1', 'open').state).toBe('healthy');
    t.holdRestriction({ code: '463', reason: 'reachout timelock', until: t.now + 300_000 });
    await t.run(100);
    const h = t.monitor.health('i1', 'open');
    expect(h.state).toBe('degraded');
    expect(h.reason).toMatch(/^WhatsApp restricted sending \(463: reachout timelock, retry in (4|5) min\)$/);
    expect(t.recorded.at(-1)?.type).toBe('HealthDegraded');
    const recordedBefore = t.recorded.length;
    await t.run(1_000);
    expect(t.recorded).toHaveLength(recordedBefore);
    t.holdRestriction(undefined);
    t.monitor.observe('i1', 'SendingResumed', {});
    await t.run(1_000);
    expect(t.monitor.health('i1', 'open').state).toBe('healthy');
    expect(t.recorded.at(-1)?.type).toBe('HealthRestored');
  });

  it('judges a restriction heard before the instance was watched as soon as the watch begins', async () => {
    const t = setup();
    t.monitor.observe('i1', 'SendingRestricted', {
      at: new Date(1_000_000).toISOString(),
      code: '463',
      reason: 'reachout timelock',
      retryAfterMs: 600_000,
    });
    t.monitor.sweep();
    expect(t.monitor.health('i1', 'open').state).toBe('degraded');
    expect(t.types()).toContain('HealthDegraded');
  });

  it('an instance that is not open is down with its state as the reason', () => {
    const t = setup();
    expect(t.monitor.health('i1', 'qr')).toMatchObject({
      state: 'down',
      reason: 'not connected to WhatsApp (state: qr)',
      checkedAt: null,
    });
  });
});
