/**
 * Checkpoints are opaque strings in the port. Both adapter families build them from two unsigned integers,
 * each zero-padded to 20 digits (the width of 2^64), joined by ':'. Fixed width makes string order equal to
 * numeric pair order, so every adapter compares checkpoints, and the database stores them, as plain text.
 * START ('') sorts before every other checkpoint.
 *
 * - PostgreSQL: "<transaction_id>:<global_position>" (the gap-safe read order, docs/event-store.md)
 * - KurrentDB: "<commit>:<prepare>" (the $all log position)
 */
import { START, type Checkpoint } from './port.ts';

const WIDTH = 20;
const PATTERN = /^(\d{20}):(\d{20})$/;

function pad(value: bigint | string | number): string {
  const digits = BigInt(value).toString();
  if (digits.startsWith('-') || digits.length > WIDTH)
    throw new RangeError(`checkpoint part out of range: ${digits}`);
  return digits.padStart(WIDTH, '0');
}

export function encodeCheckpoint(high: bigint | string | number, low: bigint | string | number): Checkpoint {
  return `${pad(high)}:${pad(low)}` as Checkpoint;
}

/** The two parts of a checkpoint, or undefined for START. Throws on anything that is not a checkpoint. */
export function decodeCheckpoint(checkpoint: Checkpoint | string): { high: bigint; low: bigint } | undefined {
  if (checkpoint === START) return undefined;
  const match = PATTERN.exec(checkpoint);
  if (!match) throw new RangeError(`not a checkpoint: ${JSON.stringify(checkpoint)}`);
  return { high: BigInt(match[1]!), low: BigInt(match[2]!) };
}

export function compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function maxCheckpoint(a: Checkpoint, b: Checkpoint): Checkpoint {
  return a >= b ? a : b;
}

/**
 * The checkpoint just before `checkpoint`: reading after it starts with the event at `checkpoint`. START for
 * the very first one, and for a checkpoint not made by encodeCheckpoint (a reader then reads from the start).
 */
export function justBefore(checkpoint: Checkpoint): Checkpoint {
  let parts: { high: bigint; low: bigint } | undefined;
  try {
    parts = decodeCheckpoint(checkpoint);
  } catch {
    return START;
  }
  if (!parts) return START;
  if (parts.low > 0n) return encodeCheckpoint(parts.high, parts.low - 1n);
  if (parts.high === 0n) return START;
  return encodeCheckpoint(parts.high - 1n, 10n ** 20n - 1n);
}
