/**
 * What a closed WhatsApp connection means and what the instance does next, by close code.
 * Codes are Baileys' (`DisconnectReason`, carried on the Boom error of `connection.update`); `null` is a
 * close without a code (network error, DNS, proxy refused, socket reset). See docs/whatsapp.md,
 * "Connection lifecycle".
 */
import type { DisconnectReason } from './events.ts';

export const CLOSE_CODE = {
  loggedOut: 401,
  forbidden: 403,
  /** Timed out; also Baileys' "QR refs attempts ended" after the last QR of a pairing attempt. */
  timedOut: 408,
  connectionClosed: 428,
  replaced: 440,
  badSession: 500,
  unavailable: 503,
  restartRequired: 515,
} as const;

/** restart_now: open a new socket at once; backoff: wait, then retry; stop: stay disconnected. */
export type CloseAction = 'restart_now' | 'backoff' | 'stop';

export interface CloseClassification {
  readonly reason: DisconnectReason;
  readonly action: CloseAction;
  /** The saved session is no longer valid: forget it, the next connect needs a QR. */
  readonly sessionRemoved: boolean;
}

export interface CloseContext {
  /** The connection was showing a QR (state `qr`): a 408 then means the QR attempts ran out. */
  readonly awaitingQr?: boolean;
}

const RESTART: CloseClassification = {
  reason: 'restart_required',
  action: 'restart_now',
  sessionRemoved: false,
};
const TRANSIENT: CloseClassification = {
  reason: 'connection_lost',
  action: 'backoff',
  sessionRemoved: false,
};
const LOGGED_OUT: CloseClassification = { reason: 'logged_out', action: 'stop', sessionRemoved: true };
// 440: another client took the session. Reconnecting would take it back, and the other side would take it
// again: a loop that ends in a ban. So never reconnect by ourselves.
const REPLACED: CloseClassification = { reason: 'replaced', action: 'stop', sessionRemoved: false };
const BANNED: CloseClassification = { reason: 'banned', action: 'stop', sessionRemoved: false };
const QR_TIMEOUT: CloseClassification = { reason: 'qr_timeout', action: 'stop', sessionRemoved: false };

export function classifyClose(code: number | null, context: CloseContext = {}): CloseClassification {
  switch (code) {
    case CLOSE_CODE.restartRequired:
      return RESTART;
    case CLOSE_CODE.loggedOut:
      return LOGGED_OUT;
    case CLOSE_CODE.replaced:
      return REPLACED;
    case CLOSE_CODE.forbidden:
      return BANNED;
    case CLOSE_CODE.timedOut:
      // Retrying a pairing that nobody completed would show QR after QR forever (no QR loop).
      return context.awaitingQr ? QR_TIMEOUT : TRANSIENT;
    default:
      // 428, 500, 503, null (network) and codes we do not know: the connection may come back.
      return TRANSIENT;
  }
}

/** Whether a close leads to a new connection without anyone asking. */
export function reconnectsByItself(code: number | null, context: CloseContext = {}): boolean {
  return classifyClose(code, context).action !== 'stop';
}
