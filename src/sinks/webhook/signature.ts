/**
 * Webhook signatures. Each request carries `X-Zapwire-Timestamp: <unix seconds>` and, when the target has a
 * secret, `X-Zapwire-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` keyed with it. Signing
 * the timestamp with the body means a captured request cannot be replayed later with a fresh timestamp:
 * the receiver checks the signature over the exact bytes it got, then that the timestamp is recent.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-zapwire-signature';
export const EVENT_ID_HEADER = 'x-zapwire-event-id';
export const TIMESTAMP_HEADER = 'x-zapwire-timestamp';
export const DELIVERY_ID_HEADER = 'x-zapwire-delivery-id';

/** How far a receiver lets a timestamp be from its clock, by default (seconds). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** `v1=<hex>`: HMAC-SHA256 over `${timestamp}.${body}`. */
export function signPayload(timestamp: string, body: string | Buffer, secret: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

/** The timestamp header, and the signature header when there is a secret (null: sent unsigned). */
export function signatureHeaders(
  body: string | Buffer,
  secret: string | null,
  nowMs: number = Date.now(),
): Record<string, string> {
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    [TIMESTAMP_HEADER]: timestamp,
    ...(secret === null ? {} : { [SIGNATURE_HEADER]: signPayload(timestamp, body, secret) }),
  };
}

export interface VerifyOptions {
  /** Largest accepted distance between the timestamp and `nowMs`, in seconds. Default 300. */
  readonly toleranceSeconds?: number;
  readonly nowMs?: number;
}

/**
 * What a receiver does: the signature must match the body and timestamp received (constant-time compare),
 * and the timestamp must be within the tolerance of the receiver's clock. A replay inside the tolerance is
 * caught by deduplicating on the event id (`X-Zapwire-Event-Id`, the body's `id`).
 */
export function verifySignature(
  body: string | Buffer,
  secret: string,
  signature: string | undefined,
  timestamp: string | undefined,
  options: VerifyOptions = {},
): boolean {
  if (!signature || !timestamp || !/^\d{1,12}$/.test(timestamp)) return false;
  const expected = Buffer.from(signPayload(timestamp, body, secret), 'utf8');
  const received = Buffer.from(signature.trim(), 'utf8');
  if (expected.length !== received.length || !timingSafeEqual(expected, received)) return false;
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const now = (options.nowMs ?? Date.now()) / 1000;
  return Math.abs(now - Number(timestamp)) <= tolerance;
}
