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
 * A processor's lease turned out to be another process's (its checkpoint update found another owner): the
 * runtime stops handing it batches and waits for the lease again. The batch may be delivered again.
 */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
  readonly code = 'ZW_ERR_LEASE_LOST';
  constructor(readonly processor: string) {
    super(`${processor}: the lease is another process's now; the batch may be delivered again`);
  }
}

/** No processor of this process retries the dead letters of this subscription (e.g. its sink is off here). */
export class DeadLetterRetryUnavailableError extends Error {
  override readonly name = 'DeadLetterRetryUnavailableError';
  readonly code = 'ZW_ERR_RETRY_UNAVAILABLE';
  constructor(readonly subscription: string) {
    super(
      `no reader of this process retries dead letters of ${subscription} (is its sink configured on this node?)`,
    );
  }
}

/** SQLSTATE classes and codes of a database that cannot serve right now (not of a wrong statement). */
const UNAVAILABLE_SQLSTATE = /^(08|53)|^57P0[1-4]$|^58030$/;
/** Socket errors of a database that cannot be reached, or of a process out of file descriptors. */
const UNAVAILABLE_SYSTEM_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT',
  'EMFILE',
  'ENFILE',
]);
/** node-postgres says these in words only. */
const UNAVAILABLE_PG_MESSAGES =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end)/;
/** KurrentDB client error types of a node that cannot serve now. */
const UNAVAILABLE_KURRENT_TYPES = new Set(['unavailable', 'deadline-exceeded', 'timeout', 'not-leader']);

/**
 * Whether an error says the store (PostgreSQL or KurrentDB) could not be reached or could not serve: an
 * outage to wait out, not a fault of the request. Follows `cause` (errors wrapped on their way up).
 */
export function isStoreUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const { code, type } = e as Error & { code?: unknown; type?: unknown };
    if (typeof code === 'string' && (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_SYSTEM_CODES.has(code)))
      return true;
    if (typeof type === 'string' && UNAVAILABLE_KURRENT_TYPES.has(type)) return true;
    if (UNAVAILABLE_PG_MESSAGES.test(e.message)) return true;
  }
  return false;
}
