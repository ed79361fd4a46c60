import { describe, expect, it } from 'vitest';
import { DEFAULT_SEND_PACING, type SendPacing } from '../../../src/domain/outbox.ts';
import { Pacer } from '../../../src/runtime/outbox/pacing.ts';

const pacing = (patch: Partial<SendPacing>): SendPacing => ({ ...DEFAULT_SEND_PACING, ...patch });
const DAY = 86_400_000;

describe('Pacer', () => {
  it('lets everything go at once when pacing is off (the default)', () => {
    const pacer = new Pacer(DEFAULT_SEND_PACING);
    for (let i = 0; i < 100; i++) {
      expect(pacer.waitMs('a@s.whatsapp.net', 1_000).ms).toBe(0);
      pacer.started('a@s.whatsapp.net', 1_000, undefined);
    }
    expect(pacer.typingMs('hello')).toBe(0);
  });

  it('spaces sends evenly by messagesPerMinute, for every recipient', () => {
    const pacer = new Pacer(pacing({ messagesPerMinute: 60 }));
    pacer.started('a', 10_000, undefined);
    expect(pacer.waitMs('b', 10_000)).toEqual({ ms: 1_000, all: true });
    expect(pacer.waitMs('a', 10_400)).toEqual({ ms: 600, all: true });
    expect(pacer.waitMs('b', 11_000).ms).toBe(0);
  });

  it('keeps the minimum gap per recipient only', () => {
    const pacer = new Pacer(pacing({ minGapPerRecipientMs: 5_000 }));
    pacer.started('a', 0, undefined);
    expect(pacer.waitMs('a', 1_000)).toEqual({ ms: 4_000, all: false });
    expect(pacer.waitMs('b', 1_000).ms).toBe(0);
    expect(pacer.waitMs('a', 5_000).ms).toBe(0);
  });

  it('adds up to jitterMs at random to a paced send', () => {
    const pacer = new Pacer(pacing({ messagesPerMinute: 60, jitterMs: 2_000 }), () => 0.5);
    pacer.started('a', 0, undefined);
    expect(pacer.waitMs('b', 0).ms).toBe(2_000);
  });

  it('ramps a newly paired number up over warmupDays, from a tenth of its rate', () => {
    const pacer = new Pacer(pacing({ messagesPerMinute: 100, warmupDays: 10 }));
    const now = 100 * DAY;
    expect(pacer.effectiveRate(now, now)).toBe(10);
    expect(pacer.effectiveRate(now - 5 * DAY, now)).toBe(50);
    expect(pacer.effectiveRate(now - 30 * DAY, now)).toBe(100);
    expect(pacer.effectiveRate(undefined, now)).toBe(100);
    pacer.started('a', now, now);
    expect(pacer.waitMs('b', now).ms).toBe(6_000);
  });

  it('shows typing for a time proportional to the text, capped', () => {
    const pacer = new Pacer(pacing({ typingMsPerChar: 50, typingMaxMs: 1_000 }));
    expect(pacer.typingMs('hello')).toBe(250);
    expect(pacer.typingMs('x'.repeat(100))).toBe(1_000);
  });

  it('applies a change of pacing to the next send', () => {
    const pacer = new Pacer(pacing({ messagesPerMinute: 1 }));
    const now = Date.now();
    pacer.started('a', now, undefined);
    expect(pacer.waitMs('b', now).ms).toBe(60_000);
    pacer.change(DEFAULT_SEND_PACING);
    expect(pacer.waitMs('b', now).ms).toBe(0);
  });
});
