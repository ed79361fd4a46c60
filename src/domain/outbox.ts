/**
 * The outbox's vocabulary: what an instance was asked to send and what became of it, in the instance's
 * own stream `outbox-<id>` (fenced by the instance's lease, like its other two streams, and deleted with
 * the instance). WhatsApp's verdicts on sending (`SendingRestricted`, `SendingResumed`) go to `wa-<id>`
 * beside the rest of the instance's WhatsApp traffic, where the instance's health reads them.
 */
import { randomBytes } from 'node:crypto';

export const OUTBOX_STREAM_PREFIX = 'outbox-';
export const outboxStream = (instanceId: string): string => `${OUTBOX_STREAM_PREFIX}${instanceId}`;

/**
 * A WhatsApp message id in the form WhatsApp Web's clients use ("3EB0" and 18 upper-case hex digits). The
 * outbox picks it before the send and records it, so a send resumed after a crash reuses it and the
 * recipient's phone drops the repeat.
 */
export function newWhatsAppMessageId(): string {
  return `3EB0${randomBytes(9).toString('hex').toUpperCase()}`;
}

interface At {
  readonly at: string;
}

/** How an instance paces what it sends. Every field 0 = that rule is off; all 0 (the default) = no pacing. */
export interface SendPacing {
  /** At most this many messages a minute, evenly spaced (60 000 / n ms apart). 0: no limit. */
  readonly messagesPerMinute: number;
  /** At least this long between two messages to the same recipient. */
  readonly minGapPerRecipientMs: number;
  /** Up to this much extra wait, at random, before each paced send (so sends do not tick like a clock). */
  readonly jitterMs: number;
  /**
   * A newly paired number ramps up: for this many days after pairing, `messagesPerMinute` is scaled by the
   * days since pairing over this (at least a tenth). Needs `messagesPerMinute`. 0: no ramp.
   */
  readonly warmupDays: number;
  /** Shows "typing…" to the recipient before each text, this long per character (0: off). */
  readonly typingMsPerChar: number;
  /** The longest "typing…" shown for one text. */
  readonly typingMaxMs: number;
}

export const DEFAULT_SEND_PACING: SendPacing = {
  messagesPerMinute: 0,
  minGapPerRecipientMs: 0,
  jitterMs: 0,
  warmupDays: 0,
  typingMsPerChar: 0,
  typingMaxMs: 8_000,
};

/** Upper bounds of each pacing field (a day at most for the times). */
export const SEND_PACING_LIMITS: Readonly<Record<keyof SendPacing, number>> = {
  messagesPerMinute: 6_000,
  minGapPerRecipientMs: 86_400_000,
  jitterMs: 3_600_000,
  warmupDays: 365,
  typingMsPerChar: 1_000,
  typingMaxMs: 60_000,
};

/** The known pacing fields of a value, each a finite number: anything else is dropped. */
export function pickSendPacing(value: unknown): Partial<SendPacing> {
  const source = (value && typeof value === 'object' ? value : {}) as Record<string, unknown>;
  const picked: { -readonly [K in keyof SendPacing]?: number } = {};
  for (const key of Object.keys(DEFAULT_SEND_PACING) as Array<keyof SendPacing>) {
    const v = source[key];
    if (typeof v === 'number' && Number.isFinite(v)) picked[key] = v;
  }
  return picked;
}

/** What a send carries besides its text (as the API took it, recipients already JIDs). */
export interface SendContent {
  readonly kind: 'text';
  readonly text: string;
  readonly quoted?: { readonly messageId: string; readonly participant?: string };
  readonly mentions?: readonly string[];
  readonly mentionAll?: boolean;
  /** "typing…" this long before the send (Evolution GO's `delay`); overrides the pacing's typing time. */
  readonly typingMs?: number;
}

export interface OutboxEventMap {
  /** A send was asked for; `messageId` is the WhatsApp id it goes out with, however often it is tried. */
  SendRequested: At & {
    readonly sendId: string;
    readonly messageId: string;
    readonly to: string;
    readonly content: SendContent;
    /** Not before this moment (ISO); null: as soon as pacing allows. */
    readonly sendAt: string | null;
    /** The caller's Idempotency-Key and a digest of the request it came with; null without one. */
    readonly idempotencyKey: string | null;
    readonly requestHash: string | null;
  };
  /** WhatsApp's server acknowledged the message. */
  SendSent: At & {
    readonly sendId: string;
    readonly messageId: string;
    readonly timestamp: string;
    readonly status: string;
    readonly mentions?: readonly string[];
  };
  /** The send will not happen: `code` is machine-readable (e.g. `463`, `error`), `reason` in words. */
  SendFailed: At & {
    readonly sendId: string;
    readonly messageId: string;
    readonly code: string;
    readonly reason: string;
  };
  SendCancelled: At & { readonly sendId: string };
  /** The instance's pacing changed (the whole of it, as in force from now). */
  SendPacingChanged: At & { readonly pacing: SendPacing };
}

/** WhatsApp's verdicts on an instance's sending, in `wa-<id>` (the instance's health reads them). */
export interface SendingVerdictEventMap {
  /**
   * WhatsApp refused a send in a way that says the number is restricted (463, a reach-out time lock, a
   * rate-limit refusal): the instance stops sending until `retryAfterMs` has passed (or a backoff).
   */
  SendingRestricted: { readonly code: string; readonly reason: string; readonly retryAfterMs?: number };
  /** The instance sends again after a restriction's pause. */
  SendingResumed: Record<string, never>;
}

export type OutboxEventType = keyof OutboxEventMap;
export type OutboxEvent = {
  [K in OutboxEventType]: { readonly type: K; readonly data: OutboxEventMap[K] };
}[OutboxEventType];

export const OUTBOX_EVENT_TYPES: readonly OutboxEventType[] = [
  'SendRequested',
  'SendSent',
  'SendFailed',
  'SendCancelled',
  'SendPacingChanged',
];

export function isOutboxEvent(event: { type: string; data: unknown }): event is OutboxEvent {
  return (OUTBOX_EVENT_TYPES as readonly string[]).includes(event.type);
}
