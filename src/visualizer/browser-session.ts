/**
 * Browser sessions for the manager and the visualizer. A browser cannot put the `apikey` header on a page
 * load or a WebSocket handshake, and a key in the URL ends up in logs, history and Referer headers. So the
 * admin types the key once into a form (POST body), and gets a short-lived signed cookie instead:
 *
 *   zapwire_session = v1.<expires ms>.<nonce>.<HMAC-SHA256(server secret, "v1.<expires>.<nonce>")>
 *
 * HttpOnly, SameSite=Strict, Path=/. The secret is random per process: a restart ends every session.
 * Requests that change something also carry `x-zapwire-csrf`, a second HMAC of the nonce that only pages
 * served to the cookie's holder learn (GET /manager/session).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = 'zapwire_session';
export const CSRF_HEADER = 'x-zapwire-csrf';
export const DEFAULT_SESSION_TTL_MS = 30 * 60_000;

export interface BrowserSession {
  readonly nonce: string;
  readonly expiresAt: Date;
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class BrowserSessions {
  private readonly secret: Buffer;

  constructor(
    readonly ttlMs = DEFAULT_SESSION_TTL_MS,
    private readonly now: () => number = Date.now,
    secret?: Buffer,
  ) {
    this.secret = secret ?? randomBytes(32);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.secret).update(text).digest('base64url');
  }

  /**
   * A new session, or with `renew` the same one (same nonce, so the same CSRF token for pages already
   * open) with a later expiry: the cookie value and when it expires.
   */
  issue(renew?: BrowserSession): { value: string; session: BrowserSession } {
    const expires = this.now() + this.ttlMs;
    const nonce = renew?.nonce ?? randomBytes(16).toString('base64url');
    const body = `v1.${expires}.${nonce}`;
    return { value: `${body}.${this.mac(body)}`, session: { nonce, expiresAt: new Date(expires) } };
  }

  /** The session a cookie value proves, or undefined (forged, malformed or expired). */
  verify(value: string | undefined): BrowserSession | undefined {
    if (!value) return undefined;
    const parts = value.split('.');
    if (parts.length !== 4 || parts[0] !== 'v1') return undefined;
    const [version, expiresText, nonce, mac] = parts as [string, string, string, string];
    if (!equal(mac, this.mac(`${version}.${expiresText}.${nonce}`))) return undefined;
    const expires = Number(expiresText);
    if (!Number.isSafeInteger(expires) || expires <= this.now()) return undefined;
    return { nonce, expiresAt: new Date(expires) };
  }

  csrfToken(session: BrowserSession): string {
    return this.mac(`csrf.${session.nonce}`);
  }

  checkCsrf(session: BrowserSession, token: string | undefined): boolean {
    return token !== undefined && equal(token, this.csrfToken(session));
  }

  /** The Set-Cookie header value for a session (or, with value '', one that removes it). */
  cookie(value: string, options: { secure: boolean; maxAgeMs?: number }): string {
    const maxAge = value === '' ? 0 : Math.floor((options.maxAgeMs ?? this.ttlMs) / 1000);
    return [
      `${SESSION_COOKIE}=${value}`,
      'Path=/',
      'HttpOnly',
      'SameSite=Strict',
      `Max-Age=${maxAge}`,
      ...(options.secure ? ['Secure'] : []),
    ].join('; ');
  }
}

/** The value of one cookie from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const index = part.indexOf('=');
    if (index < 0) continue;
    if (part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
}
