export class WrongExpectedVersionError extends Error {
  override readonly name = 'WrongExpectedVersionError';
  readonly code = 'ZW_ERR_WRONG_EXPECTED_VERSION';
  constructor(
    readonly stream: string,
    readonly expected: number | 'no_stream' | 'any',
    readonly actual: number | undefined,
  ) {
    super(`stream ${stream}: expected version ${String(expected)}, actual ${actual ?? 'unknown'}`);
  }
}

export class DuplicateEventIdError extends Error {
  override readonly name = 'DuplicateEventIdError';
  readonly code = 'ZW_ERR_DUPLICATE_EVENT_ID';
  constructor(readonly stream: string) {
    super(`stream ${stream}: an event with one of these ids is already stored`);
  }
}

/**
 * An append or session write refused because this node does not hold the instance's lease (cluster mode:
 * another node took it over, or it was released). Nothing was written.
 */
export class FencedWriteError extends Error {
  override readonly name = 'FencedWriteError';
  readonly code = 'ZW_ERR_FENCED';
  constructor(
    readonly instanceId: string,
    message: string,
  ) {
    super(message);
  }
}

/** SQLSTATE of a write refused by zw_lease_check (src/cluster/migrations). */
export const FENCED_SQLSTATE = 'ZW423';

export function isWrongExpectedVersion(error: unknown): error is WrongExpectedVersionError {
  return error instanceof WrongExpectedVersionError;
}

/**
 * SQLSTATEs that say the database cannot serve now, not that the statement is wrong: connection
 * exceptions (class 08), the server shutting down or in crash recovery (57P01–57P03), a full disk (53100).
 */
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[123]|53100)$/;
/** Socket errors of a connection attempt to a server that is not there (or not reachable). */
const UNREACHABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
]);
/** node-postgres' own errors for a connection lost under a query, or not made in time. */
const LOST_CONNECTION =
  /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect)/;

/**
 * Whether an error means "the database is unavailable" (stopped, restarting, unreachable, out of disk):
 * the request may succeed later, so the edge answers 503 with Retry-After instead of 500. Looks through
 * `cause` chains.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const { code, syscall } = current as NodeJS.ErrnoException;
    if (typeof code === 'string' && UNAVAILABLE_SQLSTATE.test(code)) return true;
    if (syscall === 'connect' && typeof code === 'string' && UNREACHABLE_ERRNO.has(code)) return true;
    if (LOST_CONNECTION.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}
