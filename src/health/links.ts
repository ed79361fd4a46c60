/**
 * The links' judgements, pure: given what was measured, each says ok / degraded / down and why, in words an
 * operator reads ("no pong for 45 s", "12 of 40 messages failed to decrypt in 5 min").
 */
import type { HealthState, LinkName, LinkReport, LinkState, SendingRestriction } from './types.ts';

export interface Judgement {
  readonly state: LinkState;
  readonly figure: number | null;
  readonly unit: LinkReport['unit'];
  readonly reason: string | null;
}

const unknown = (unit: LinkReport['unit']): Judgement => ({
  state: 'unknown',
  figure: null,
  unit,
  reason: null,
});

export function seconds(ms: number): string {
  return `${Math.max(0, Math.round(ms / 1000))} s`;
}

function minutes(ms: number): string {
  const m = ms / 60_000;
  return m >= 1 && Number.isInteger(Math.round(m * 10) / 10) ? `${Math.round(m)} min` : seconds(ms);
}

export function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

/** Transport: the last ping's round trip, or how long no pong came. */
export function judgeTransport(input: {
  readonly measured: boolean;
  readonly lastRttMs: number | null;
  /** A ping went unanswered and no pong came since. */
  readonly missing: boolean;
  readonly silentForMs: number;
}): Judgement {
  if (!input.measured) return unknown('ms');
  if (input.missing)
    return {
      state: 'down',
      figure: input.silentForMs,
      unit: 'ms',
      reason: `no pong for ${seconds(input.silentForMs)}`,
    };
  return { state: 'ok', figure: input.lastRttMs, unit: 'ms', reason: null };
}

/** Delivery: the last probe's round trip; one miss is a doubt (degraded), two in a row are down. */
export function judgeDelivery(input: {
  readonly measured: boolean;
  readonly lastRttMs: number | null;
  readonly misses: number;
  readonly silentForMs: number;
}): Judgement {
  if (!input.measured) return unknown('ms');
  if (input.misses >= 2)
    return {
      state: 'down',
      figure: input.silentForMs,
      unit: 'ms',
      reason: `WhatsApp routed none of ${input.misses} delivery probes to this device (nothing heard for ${seconds(input.silentForMs)})`,
    };
  if (input.misses === 1)
    return {
      state: 'degraded',
      figure: input.silentForMs,
      unit: 'ms',
      reason: 'a delivery probe went unanswered; checking again',
    };
  return { state: 'ok', figure: input.lastRttMs, unit: 'ms', reason: null };
}

/** Decryption: failures over the window, degraded past both the minimum count and the share. */
export function judgeDecryption(input: {
  readonly failed: number;
  readonly total: number;
  readonly windowMs: number;
  readonly minFailures: number;
  readonly maxShare: number;
}): Judgement {
  if (input.total === 0) return { state: 'ok', figure: 0, unit: 'share', reason: null };
  const share = input.failed / input.total;
  if (input.failed >= input.minFailures && share >= input.maxShare)
    return {
      state: 'degraded',
      figure: share,
      unit: 'share',
      reason: `${input.failed} of ${input.total} messages failed to decrypt in ${minutes(input.windowMs)}`,
    };
  return { state: 'ok', figure: share, unit: 'share', reason: null };
}

/**
 * Pipeline: a stuck mailbox or append is down (nothing gets recorded); a sink whose oldest undelivered event
 * of the instance is older than `sinkLagMs` is degraded (every such sink named, with the most behind as the
 * figure).
 */
export function judgePipeline(input: {
  readonly mailboxBusyForMs: number | undefined;
  readonly oldestAppendMs: number | undefined;
  readonly lastAppendLatencyMs: number | undefined;
  readonly sinkLags: ReadonlyArray<{
    readonly sink: string;
    readonly behind: number;
    readonly oldestMs: number;
    readonly why: string | null;
  }>;
  readonly stuckMs: number;
  readonly sinkLagMs: number;
}): Judgement {
  if (input.mailboxBusyForMs !== undefined && input.mailboxBusyForMs >= input.stuckMs)
    return {
      state: 'down',
      figure: input.mailboxBusyForMs,
      unit: 'ms',
      reason: `the instance's actor has been stuck on one job for ${seconds(input.mailboxBusyForMs)}`,
    };
  if (input.oldestAppendMs !== undefined && input.oldestAppendMs >= input.stuckMs)
    return {
      state: 'down',
      figure: input.oldestAppendMs,
      unit: 'ms',
      reason: `a received event has waited ${seconds(input.oldestAppendMs)} to be recorded`,
    };
  const lagging = input.sinkLags.filter((lag) => lag.behind > 0 && lag.oldestMs >= input.sinkLagMs);
  if (lagging.length > 0)
    return {
      state: 'degraded',
      figure: Math.max(...lagging.map((lag) => lag.behind)),
      unit: 'events',
      reason: lagging
        .map(
          (lag) =>
            `${lag.sink} ${thousands(lag.behind)} events behind, oldest ${minutes(lag.oldestMs)}${lag.why ? ` (${lag.why})` : ''}`,
        )
        .join('; '),
    };
  return { state: 'ok', figure: input.lastAppendLatencyMs ?? null, unit: 'ms', reason: null };
}

/** WhatsApp's verdicts: a restriction on sending in force. */
export function judgeVerdicts(restriction: SendingRestriction | undefined, now: number): Judgement {
  if (!restriction) return { state: 'ok', figure: null, unit: null, reason: null };
  const until =
    restriction.retryAfterMs !== undefined
      ? `, retry in ${minutes(Math.max(0, Date.parse(restriction.at) + restriction.retryAfterMs - now))}`
      : '';
  return {
    state: 'degraded',
    figure: null,
    unit: null,
    reason: `WhatsApp restricted sending (${restriction.code}: ${restriction.reason}${until})`,
  };
}

/** The instance's verdict: the worst link. */
export function overallState(states: Iterable<LinkState>): HealthState {
  let worst: HealthState = 'healthy';
  for (const state of states) {
    if (state === 'down') return 'down';
    if (state === 'degraded') worst = 'degraded';
  }
  return worst;
}

export type LinkJudgements = Readonly<Record<LinkName, Judgement>>;
