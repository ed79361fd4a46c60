/**
 * int8 in one place. node-postgres returns int8 (and xid8) as decimal strings; PGlite returns a JS number
 * when small and a bigint when large. Both adapters are configured to return strings, so a row read from
 * either has the same shape, and the event store converts with `int8ToNumber` where a number is needed.
 * SQL in this project still casts int8 to text or int explicitly (sql.ts), which keeps it adapter-proof.
 */
import { types, type ParserOptions } from '@electric-sql/pglite';

/** PGlite parsers that keep int8 as the server's decimal text, as node-postgres does. */
export const PGLITE_INT8_AS_TEXT: ParserOptions = {
  [types.INT8]: (value: string) => value,
};

/** Converts an int8 value from either adapter to a safe integer; throws instead of losing precision. */
export function int8ToNumber(value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    throw new RangeError(`int8 value ${String(value)} is not a safe integer`);
  }
  return n;
}
