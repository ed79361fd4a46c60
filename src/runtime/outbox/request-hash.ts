/**
 * The digest an Idempotency-Key is bound to: a retry under the same key must be the same request (as
 * Stripe checks). Keys are sorted, so the order of a body's fields does not matter; absent and undefined
 * fields are the same.
 */
import { createHash } from 'node:crypto';

export function requestHash(request: Readonly<Record<string, unknown>>): string {
  return createHash('sha256').update(canonical(request)).digest('hex');
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}
