/**
 * Errors with stable codes (ZW_ERR_*), in the manner of @fastify/error. The HTTP edge maps each code to a
 * status (src/http/errors.ts) and renders `{ error: { code, message } }`; anything else becomes a 500.
 */
export class ZapwireError extends Error {
  override readonly name = 'ZapwireError';
  constructor(
    readonly code: string,
    message: string,
    readonly details?: Readonly<Record<string, unknown>>,
    /** Seconds, for 429 and 503. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

type Factory<A extends unknown[]> = (...args: A) => ZapwireError;

function define<A extends unknown[]>(code: string, message: (...args: A) => string): Factory<A> {
  return (...args: A) => new ZapwireError(code, message(...args));
}

export const Errors = {
  validation: (message: string, details?: Record<string, unknown>) =>
    new ZapwireError('ZW_ERR_VALIDATION', message, details),
  unauthorized: define(
    'ZW_ERR_UNAUTHORIZED',
    () => 'missing or invalid API key: send the global API key or the instance token in the "apikey" header',
  ),
  forbidden: define(
    'ZW_ERR_FORBIDDEN',
    (what: string) => `this API key cannot access ${what}: an instance token only works for its own instance`,
  ),
  adminOnly: define(
    'ZW_ERR_ADMIN_ONLY',
    () => 'this route needs the global API key (GLOBAL_API_KEY); an instance token is not enough',
  ),
  instanceNotFound: define(
    'ZW_ERR_INSTANCE_NOT_FOUND',
    (idOrName: string) => `instance "${idOrName}" not found: check the id or name with GET /instance/all`,
  ),
  instanceNameRequired: define(
    'ZW_ERR_INSTANCE_NAME_REQUIRED',
    () =>
      'name the instance: pass "instanceName" (in the body or query) or use the instance token as the apikey',
  ),
  nameTaken: define(
    'ZW_ERR_NAME_TAKEN',
    (name: string) => `an instance named "${name}" already exists: names are unique, choose another`,
  ),
  tokenTaken: define(
    'ZW_ERR_TOKEN_TAKEN',
    () => 'this token is already used by another instance: tokens are unique, choose another or omit it',
  ),
  noActiveSession: define(
    'ZW_ERR_NO_ACTIVE_SESSION',
    () => 'no active session found: connect the instance with POST /instance/connect and scan the QR code',
  ),
  clientDisconnected: define(
    'ZW_ERR_CLIENT_DISCONNECTED',
    () => 'client disconnected: the instance is not connected to WhatsApp; try POST /instance/reconnect',
  ),
  alreadyConnected: define(
    'ZW_ERR_ALREADY_CONNECTED',
    () =>
      'the instance is already connected: no QR code is needed (disconnect or logout first to pair again)',
  ),
  qrNotReady: define(
    'ZW_ERR_QR_NOT_READY',
    (state: string) =>
      `no QR code yet (state "${state}"): call POST /instance/connect, wait 2-3 seconds and ask again`,
  ),
  invalidTransition: define(
    'ZW_ERR_INVALID_STATE',
    (action: string, state: string) => `cannot ${action} while the instance is "${state}"`,
  ),
  conflict: define(
    'ZW_ERR_CONCURRENT_UPDATE',
    () => 'the instance was changed by another request at the same time; retry',
  ),
  rateLimited: (retryAfterSeconds: number) =>
    new ZapwireError(
      'ZW_ERR_RATE_LIMITED',
      `reconnect at most once a minute: try again in ${retryAfterSeconds} s`,
      undefined,
      retryAfterSeconds,
    ),
  /** A per-key cap (e.g. WebSocket connections or replays) is reached; the message says what to do. */
  tooMany: (message: string, retryAfterSeconds = 5) =>
    new ZapwireError('ZW_ERR_RATE_LIMITED', message, undefined, retryAfterSeconds),
  unavailable: (message: string, retryAfterSeconds = 1) =>
    new ZapwireError('ZW_ERR_UNAVAILABLE', message, undefined, retryAfterSeconds),
  deliveryNotFound: define(
    'ZW_ERR_DELIVERY_NOT_FOUND',
    (deliveryId: string, instance: string) =>
      `delivery ${deliveryId} not found for this instance: list them with GET /instance/${instance}/webhook/deliveries`,
  ),
  deadLetterNotFound: define(
    'ZW_ERR_DEAD_LETTER_NOT_FOUND',
    (id: string) => `dead letter ${id} not found: list them with GET /admin/dead-letters`,
  ),
  /** No reader of this node sends the dead letter's event again (its sink is off here, for instance). */
  retryUnavailable: (message: string) => new ZapwireError('ZW_ERR_RETRY_UNAVAILABLE', message),
  projectionNotFound: define(
    'ZW_ERR_PROJECTION_NOT_FOUND',
    (name: string, known: readonly string[]) => `no projection named "${name}": one of ${known.join(', ')}`,
  ),
  rebuildRunning: define(
    'ZW_ERR_REBUILD_RUNNING',
    (name: string) => `projection "${name}" is being rebuilt already`,
  ),
  notYetCreated: define(
    'ZW_ERR_NOT_YET_CREATED',
    (at: string, createdAt: string) =>
      `the instance did not exist yet at ${at}: its first event was recorded at ${createdAt}`,
  ),
  upgradeRequired: define(
    'ZW_ERR_UPGRADE_REQUIRED',
    (path: string) => `${path} is a WebSocket endpoint: open it with a WebSocket client (Upgrade: websocket)`,
  ),
  idempotencyKeyReused: define(
    'ZW_ERR_IDEMPOTENCY_KEY_REUSED',
    (key: string) =>
      `Idempotency-Key "${key}" was used with a different request: a retry must repeat the first request exactly (same route, recipient, text and options); use a new key for a new message`,
  ),
  sendNotFound: define(
    'ZW_ERR_SEND_NOT_FOUND',
    (sendId: string) =>
      `send ${sendId} not found for this instance (sends are kept 7 days): check the sendId a send route answered`,
  ),
  sendNotCancellable: define(
    'ZW_ERR_SEND_NOT_CANCELLABLE',
    (sendId: string, state: string) =>
      `send ${sendId} is ${state}: only a send still queued or scheduled can be cancelled`,
  ),
  sendFailed: (sendId: string, code: string, reason: string) =>
    new ZapwireError('ZW_ERR_SEND_FAILED', `the message was not sent (${code}): ${reason}`, {
      sendId,
      code,
      reason,
    }),
  instanceDeleted: define(
    'ZW_ERR_INSTANCE_DELETED',
    (idOrName: string) => `instance "${idOrName}" was deleted`,
  ),
} as const;

export function isZapwireError(error: unknown): error is ZapwireError {
  return error instanceof ZapwireError;
}
