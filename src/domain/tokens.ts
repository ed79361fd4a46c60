import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Tokens are stored and looked up only by a digest; the token itself is shown once (create, rotate).
 * The digest is an HMAC under a server pepper kept out of the store (TOKEN_PEPPER or DATA_DIR), so the
 * `token-<digest>` stream names and read-model rows do not let someone who reads the store test guesses
 * of a short custom token offline, as an unsalted SHA-256 did.
 */
export interface TokenDigests {
  /** The digest new tokens are stored under. */
  digest(token: string): string;
  /** Every digest a token may be stored under, newest first (older installs used unsalted SHA-256). */
  candidates(token: string): string[];
}

export function tokenDigests(pepper: string): TokenDigests {
  const digest = (token: string): string => createHmac('sha256', pepper).update(token, 'utf8').digest('hex');
  return { digest, candidates: (token) => [digest(token), legacyTokenHash(token)] };
}

/** How tokens were stored before the pepper; still accepted, so existing tokens keep working. */
export function legacyTokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** 32 random bytes: 43 characters, 256 bits. */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison of two secrets of any length (both hashed first). */
export function secretsEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}

/** A webhook signing secret (HMAC key): 32 random bytes, base64url. */
export function generateWebhookSecret(): string {
  return randomBytes(32).toString('base64url');
}
