/**
 * Admin access for the browser pages (manager, visualizer): the `apikey` header as everywhere, or the
 * signed session cookie that POST /manager/session hands out (src/visualizer/browser-session.ts).
 * A key is never accepted in a URL: URLs end up in access logs, browser history and Referer headers.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Errors, isZapwireError } from '../domain/errors.ts';
import {
  CSRF_HEADER,
  SESSION_COOKIE,
  cookieValue,
  type BrowserSession,
  type BrowserSessions,
} from '../visualizer/browser-session.ts';

/** What a browser request must show besides a valid session cookie. */
export interface BrowserCheck {
  /** The CSRF page token in its header (every request that changes something). */
  readonly csrf?: boolean;
  /** An Origin of this very host (WebSocket handshakes). */
  readonly sameOrigin?: boolean;
}

export type BrowserAccess =
  { readonly via: 'apikey' } | { readonly via: 'cookie'; readonly session: BrowserSession };

export function sessionOf(request: FastifyRequest, sessions: BrowserSessions): BrowserSession | undefined {
  return sessions.verify(cookieValue(request.headers.cookie, SESSION_COOKIE));
}

/**
 * A browser's WebSocket handshake always carries Origin; a cookie-authenticated one must come from this
 * very host (Cross-Site WebSocket Hijacking). Clients without Origin are not browsers and have no cookie
 * to abuse.
 */
export function fromSameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (!origin) return true;
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}

/**
 * The admin key in the header, or a valid session cookie; with `csrf`, a cookie must come with the CSRF
 * header too (every request that changes something). Throws 401, or 403 for an instance token.
 */
export function requireBrowserAdmin(
  request: FastifyRequest,
  sessions: BrowserSessions,
  { csrf = false, sameOrigin = false }: BrowserCheck = {},
): BrowserAccess {
  const principal = request.principal;
  if (principal?.role === 'admin') return { via: 'apikey' };
  if (principal) throw Errors.adminOnly();
  const session = sessionOf(request, sessions);
  if (!session) throw Errors.unauthorized();
  if (sameOrigin && !fromSameOrigin(request)) throw Errors.forbidden('this page from another origin');
  if (csrf) {
    const header = request.headers[CSRF_HEADER];
    const token = Array.isArray(header) ? header[0] : header;
    if (!sessions.checkCsrf(session, token)) {
      throw Errors.forbidden('this action without the page token (x-zapwire-csrf); reload the page');
    }
  }
  return { via: 'cookie', session };
}

/** Headers for every HTML page: no third-party anything, no framing, no Referer leaks. */
export function pageHeaders(reply: FastifyReply, request: FastifyRequest): FastifyReply {
  const host = request.headers.host ?? '';
  const wsOrigins = /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? ` ws://${host} wss://${host}` : '';
  return reply
    .header(
      'content-security-policy',
      `default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'${wsOrigins}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`,
    )
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8');
}

/**
 * The error handler of an HTML page: a refused key or session answers with the sign-in page and the
 * refusal's status, so a browser can sign in and reload. Other errors go on to the app's handler.
 */
export function signInPageOnRefusal(signInPage: Buffer) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (isZapwireError(error) && (error.statusCode === 401 || error.statusCode === 403))
      return pageHeaders(reply, request).status(error.statusCode).send(signInPage);
    throw error;
  };
}
