/**
 * int8 in one place. node-postgres returns int8 (and xid8) as decimal strings, and the event store converts
 * them with `int8ToNumber` where a number is needed. SQL in this project casts int8 to text or int
 * explicitly, so rows keep one shape whatever the driver's parsers are set to.
 */

/** Converts an int8 value from the driver to a safe integer; throws instead of losing precision. */
export function int8ToNumber(value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    throw new RangeError(`int8 value ${String(value)} is not a safe integer`);
  }
  return n;
}
