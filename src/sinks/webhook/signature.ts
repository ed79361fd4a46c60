/**
 * Webhook signatures: `X-Zapwire-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
 * instance's webhook secret. Receivers recompute it over the exact bytes received, before parsing.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-zapwire-signature';
export const EVENT_ID_HEADER = 'x-zapwire-event-id';
export const TIMESTAMP_HEADER = 'x-zapwire-timestamp';
export const DELIVERY_ID_HEADER = 'x-zapwire-delivery-id';

export function signBody(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Constant-time check of a received signature header against the body. */
export function verifySignature(body: string | Buffer, secret: string, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(signBody(body, secret), 'utf8');
  const received = Buffer.from(header.trim(), 'utf8');
  return expected.length === received.length && timingSafeEqual(expected, received);
}
