/**
 * The sandbox's one error type, in a module of its own: every part of the sandbox throws it and the
 * server imports every part, so keeping it in server.ts made each part import back into the server.
 */

/** An error with an HTTP-like status, for the control API. */
export class SandboxError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
