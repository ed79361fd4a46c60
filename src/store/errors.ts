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

export function isWrongExpectedVersion(error: unknown): error is WrongExpectedVersionError {
  return error instanceof WrongExpectedVersionError;
}
