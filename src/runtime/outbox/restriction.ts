/**
 * Which refusals of a send say that WhatsApp restricts the number (stop sending for a while) rather than
 * that this one message cannot go. Error codes as Baileys surfaces them (Socket/messages-recv.js
 * `handleBadAck`, Utils/decode-wa-message.js `SERVER_ERROR_CODES`, `NACK_REASONS`).
 */
import { SendRefusedError } from '../../whatsapp/port.ts';

export interface Restriction {
  readonly code: string;
  readonly reason: string;
  /** The refused send may go again once the pause is over (a rate limit); otherwise it fails. */
  readonly retrySend: boolean;
  /** How long WhatsApp asked us to wait, when it said. */
  readonly retryAfterMs?: number;
}

export type SendVerdict =
  | { readonly kind: 'restricted'; readonly restriction: Restriction }
  | { readonly kind: 'failed'; readonly code: string; readonly reason: string };

export function classifySendError(error: unknown): SendVerdict {
  if (error instanceof SendRefusedError) {
    const text = error.message.toLowerCase();
    if (error.code === '463' || text.includes('reachout') || text.includes('timelock'))
      return {
        kind: 'restricted',
        restriction: {
          code: error.code === '463' ? '463' : 'reachout_timelock',
          reason:
            'WhatsApp refused the message (error 463): the number is restricted from reaching this contact (a new chat without a privacy token, or a reach-out time lock); sending again now would count as another reach-out',
          retrySend: false,
        },
      };
    if (error.code === '429' || text.includes('rate-overlimit'))
      return {
        kind: 'restricted',
        restriction: {
          code: '429',
          reason:
            'WhatsApp is rate-limiting this number (429 rate-overlimit): sending pauses, then the send goes again',
          retrySend: true,
        },
      };
    return { kind: 'failed', code: error.code, reason: error.message };
  }
  return { kind: 'failed', code: 'error', reason: error instanceof Error ? error.message : String(error) };
}

/** The pause after the `streak`-th restriction in a row: base, doubled each time, at most `maxMs`. */
export function restrictionPauseMs(
  restriction: Restriction,
  streak: number,
  policy: { readonly baseMs: number; readonly maxMs: number },
): number {
  if (restriction.retryAfterMs !== undefined) return Math.min(restriction.retryAfterMs, policy.maxMs);
  return Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, streak - 1));
}
