/**
 * Browser sessions for the manager and the visualizer. A browser cannot put the `apikey` header on a page
 * load or a WebSocket handshake, and a key in the URL ends up in logs, history and Referer headers. So the
 * admin types the key once into a form (POST body), and gets a short-lived session cookie instead:
 *
 *   zapwire_session = v2.<session id: 32 random bytes, base64url>
 *
 * HttpOnly, SameSite=Strict, Path=/. The server holds the live sessions (in this process's memory: a
 * restart ends every session), so a cookie is worth exactly what the server says: sign-out revokes it at
 * once, and a session renewed by opening the page is a new session (new cookie, new CSRF token) with the
 * old one revoked, so a cookie copied at some point stops working the next time the page is opened.
 * Requests that change something also carry `x-zapwire-csrf`, an HMAC of the session id that only pages
 * served to the cookie's holder learn (GET /manager/session).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SESSION_COOKIE = 'zapwire_session';
export const CSRF_HEADER = 'x-zapwire-csrf';
export const DEFAULT_SESSION_TTL_MS = 30 * 60_000;

/** Live sessions held at once; beyond it the oldest is revoked (only the admin key opens sessions). */
const MAX_LIVE_SESSIONS = 10_000;

export interface BrowserSession {
  readonly id: string;
  readonly expiresAt: Date;
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class BrowserSessions {
  private readonly secret: Buffer;
  /** Session id → expiry (ms), in the order they were issued. */
  private readonly live = new Map<string, number>();

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

  /** A new session: the cookie value and when it expires. */
  issue(): { value: string; session: BrowserSession } {
    this.forgetExpired();
    if (this.live.size >= MAX_LIVE_SESSIONS) {
      const oldest = this.live.keys().next().value;
      if (oldest !== undefined) this.live.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    const expires = this.now() + this.ttlMs;
    this.live.set(id, expires);
    return { value: `v2.${id}`, session: { id, expiresAt: new Date(expires) } };
  }

  /** Replaces a session with a new one (a later expiry, a new CSRF token); the old one stops working. */
  rotate(session: BrowserSession): { value: string; session: BrowserSession } {
    this.revoke(session);
    return this.issue();
  }

  /** Ends a session on the server: its cookie opens nothing from now on. */
  revoke(session: BrowserSession): void {
    this.live.delete(session.id);
  }

  /** The live session a cookie value names, or undefined (never issued, revoked, expired, malformed). */
  verify(value: string | undefined): BrowserSession | undefined {
    const id = /^v2\.([A-Za-z0-9_-]{43})$/.exec(value ?? '')?.[1];
    if (id === undefined) return undefined;
    const expires = this.live.get(id);
    if (expires === undefined) return undefined;
    if (expires <= this.now()) {
      this.live.delete(id);
      return undefined;
    }
    return { id, expiresAt: new Date(expires) };
  }

  csrfToken(session: BrowserSession): string {
    return this.mac(`csrf.${session.id}`);
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

  private forgetExpired(): void {
    const now = this.now();
    for (const [id, expires] of this.live) if (expires <= now) this.live.delete(id);
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
