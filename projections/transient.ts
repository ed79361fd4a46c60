/**
 * Tells a failure of the database itself (gone, restarting, out of resources, a serialisation conflict:
 * retry, never skip anything) from a failure of one event (a constraint it breaks, data it lacks: the same
 * every time). Only the second kind may make a projection skip an event.
 */

/** SQLSTATE classes: 08 connection, 40 transaction rollback, 53 resources, 57 operator, 58 system. */
const TRANSIENT_SQLSTATE = /^(08|40|53|57|58)[0-9A-Z]{3}$/;
/** Node socket errors (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE, ...). */
const SOCKET_ERROR = /^E[A-Z]+$/;
const TRANSIENT_MESSAGE = /connection (terminated|refused|reset|closed)|timeout|pool (is )?(closed|ended)/i;

export function isTransientFailure(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (TRANSIENT_SQLSTATE.test(code) || SOCKET_ERROR.test(code))) return true;
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && TRANSIENT_MESSAGE.test(message);
}
