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
