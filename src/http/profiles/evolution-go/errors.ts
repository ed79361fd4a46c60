/**
 * Errors as Evolution GO answers them: `{"error":"<text>"}`, with its texts where a client may match on
 * them, and 401 `not authorized` for every missing or wrong key.
 */
import type { FastifyError } from 'fastify';
import { isZapwireError } from '../../../domain/errors.ts';
import { asDomainError, statusOf } from '../../errors.ts';
import { EvolutionError } from './requests.ts';

export interface EvolutionErrorReply {
  readonly statusCode: number;
  readonly body: { readonly error: string };
  readonly retryAfter?: number;
  /** An unexpected failure: log it (its text is not sent). */
  readonly unexpected: boolean;
}

export const NOT_AUTHORIZED = 'not authorized';

/** zapwire error codes whose Evolution GO text differs; the status stays zapwire's unless given. */
const TEXTS: Readonly<Record<string, { readonly status?: number; readonly text: string }>> = {
  ZW_ERR_UNAUTHORIZED: { status: 401, text: NOT_AUTHORIZED },
  ZW_ERR_ADMIN_ONLY: { status: 401, text: NOT_AUTHORIZED },
  ZW_ERR_FORBIDDEN: { status: 401, text: NOT_AUTHORIZED },
  ZW_ERR_INSTANCE_NAME_REQUIRED: { status: 401, text: NOT_AUTHORIZED },
  ZW_ERR_INSTANCE_NOT_FOUND: { text: 'record not found' },
  ZW_ERR_INSTANCE_DELETED: { status: 404, text: 'record not found' },
  ZW_ERR_NAME_TAKEN: { text: 'instance already exists' },
  ZW_ERR_TOKEN_TAKEN: { text: 'token already exists' },
  ZW_ERR_NO_ACTIVE_SESSION: { status: 400, text: 'no active session found' },
  ZW_ERR_CLIENT_DISCONNECTED: { status: 400, text: 'client disconnected' },
  ZW_ERR_ALREADY_CONNECTED: { status: 400, text: 'session already logged in' },
  ZW_ERR_QR_NOT_READY: { status: 400, text: 'no QR code available. Please wait a moment and try again' },
};

/** Go's JSON decoder texts for what Fastify's parser refuses. */
function parserText(error: FastifyError): string | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'EOF';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'request body too large: the limit is 1 MiB';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported content type: send JSON';
    default:
      return undefined;
  }
}

export function evolutionErrorOf(raw: FastifyError): EvolutionErrorReply {
  const error = asDomainError(raw);
  if (error instanceof EvolutionError) {
    return { statusCode: error.statusCode, body: { error: error.message }, unexpected: false };
  }
  if (isZapwireError(error)) {
    const mapped = TEXTS[error.code];
    return {
      statusCode: mapped?.status ?? statusOf(error),
      body: { error: mapped?.text ?? error.message },
      unexpected: false,
      ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
    };
  }
  if (error.validation) {
    const message = error.validation
      .map(
        (v) =>
          `${v.instancePath ? v.instancePath.slice(1) : (error.validationContext ?? 'request')} ${v.message ?? 'is invalid'}`,
      )
      .join('; ');
    return { statusCode: 400, body: { error: message }, unexpected: false };
  }
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
  if (status < 500) {
    return { statusCode: status, body: { error: parserText(error) ?? error.message }, unexpected: false };
  }
  return { statusCode: 500, body: { error: 'internal error; see the server log' }, unexpected: true };
}
