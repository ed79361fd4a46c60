/** Identifiers the server mints: stanza ids, message ids, QR refs, phone numbers and LIDs. */
import { randomBytes, randomInt } from 'node:crypto';

export function stanzaId(): string {
  return randomBytes(8).toString('hex');
}

/** Shaped like WhatsApp message ids (`3EB0` + hex for web clients; phones use other prefixes). */
export function messageId(): string {
  return '3A' + randomBytes(9).toString('hex').toUpperCase();
}

export function callId(): string {
  return randomBytes(16).toString('hex').toUpperCase();
}

export function qrRef(): string {
  return `2@${randomBytes(24).toString('base64')}`;
}

/** Numbers in the +1 555 01xx fictional range would run out fast; these are +99 (unassigned) numbers. */
export function phoneNumber(): string {
  return `99${randomInt(100_000_000, 999_999_999)}`;
}

export function lidUser(): string {
  return `${randomInt(10_000_000, 99_999_999)}${randomInt(1_000_000, 9_999_999)}`;
}

export function groupUser(): string {
  return `120363${randomInt(100_000_000, 999_999_999)}${randomInt(100_000, 999_999)}`;
}
