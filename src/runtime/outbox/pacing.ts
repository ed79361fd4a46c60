/**
 * When the next send of an instance may go, by its pacing (src/domain/outbox.ts `SendPacing`). Pure: the
 * outbox tells it what started when, and asks how long a send to a recipient must still wait.
 */
import type { SendPacing } from '../../domain/outbox.ts';

const DAY_MS = 86_400_000;
/** A number in its warm-up sends at least this share of its rate. */
const WARMUP_FLOOR = 0.1;

export class Pacer {
  /** No send may start before this (the rate's spacing, plus its jitter). */
  private nextAnyAt = 0;
  private lastStart: { at: number; pairedAt: number | undefined } | undefined;
  private readonly lastToRecipient = new Map<string, number>();

  constructor(
    private pacing: SendPacing,
    private readonly random: () => number = Math.random,
  ) {}

  get settings(): SendPacing {
    return this.pacing;
  }

  change(pacing: SendPacing): void {
    this.pacing = pacing;
    // The next send is spaced from the last one by the new rate (without the old jitter).
    const last = this.lastStart;
    this.nextAnyAt = last ? last.at + this.spacingMs(last.pairedAt, last.at) : 0;
  }

  /** The rate in force, messages a minute (0: none), for a number paired at `pairedAt`. */
  effectiveRate(pairedAt: number | undefined, now: number): number {
    const { messagesPerMinute, warmupDays } = this.pacing;
    if (messagesPerMinute <= 0) return 0;
    if (warmupDays <= 0 || pairedAt === undefined) return messagesPerMinute;
    const share = Math.min(1, Math.max(WARMUP_FLOOR, (now - pairedAt) / (warmupDays * DAY_MS)));
    return messagesPerMinute * share;
  }

  private spacingMs(pairedAt: number | undefined, now: number): number {
    const rate = this.effectiveRate(pairedAt, now);
    return rate > 0 ? 60_000 / rate : 0;
  }

  /** How long a send to `recipient` must still wait (0: it may go now). */
  waitMs(recipient: string, now: number): { readonly ms: number; readonly all: boolean } {
    const rateWait = Math.max(0, this.nextAnyAt - now);
    if (rateWait > 0) return { ms: rateWait, all: true };
    const last = this.lastToRecipient.get(recipient);
    const gap = this.pacing.minGapPerRecipientMs;
    if (gap > 0 && last !== undefined && now < last + gap) return { ms: last + gap - now, all: false };
    return { ms: 0, all: false };
  }

  /** A send to `recipient` starts now. */
  started(recipient: string, now: number, pairedAt: number | undefined): void {
    this.lastStart = { at: now, pairedAt };
    const spacing = this.spacingMs(pairedAt, now);
    const paced = spacing > 0 || this.pacing.minGapPerRecipientMs > 0;
    const jitter = paced && this.pacing.jitterMs > 0 ? this.random() * this.pacing.jitterMs : 0;
    this.nextAnyAt = spacing > 0 || jitter > 0 ? now + spacing + jitter : 0;
    if (this.pacing.minGapPerRecipientMs > 0) this.lastToRecipient.set(recipient, now);
    if (this.lastToRecipient.size > 10_000) this.forgetOld(now);
  }

  /** A send to `recipient` that went out at `at` (sends found in the index after a restart). */
  remember(recipient: string, at: number): void {
    if ((this.lastToRecipient.get(recipient) ?? 0) < at) this.lastToRecipient.set(recipient, at);
  }

  /** "typing…" before a text of this length. */
  typingMs(text: string): number {
    const { typingMsPerChar, typingMaxMs } = this.pacing;
    if (typingMsPerChar <= 0) return 0;
    return Math.min(typingMaxMs, Math.round(text.length * typingMsPerChar));
  }

  private forgetOld(now: number): void {
    for (const [recipient, at] of this.lastToRecipient)
      if (now - at > this.pacing.minGapPerRecipientMs) this.lastToRecipient.delete(recipient);
  }
}
