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

/** The least a caller-chosen token must have: length, and variety (`aaaa…` is long but one guess). */
export const MIN_TOKEN_LENGTH = 16;
export const MIN_TOKEN_DISTINCT_CHARACTERS = 8;

/**
 * Why a caller-chosen instance token is too easy to guess, or undefined when it is not. Tokens zapwire
 * generates (256 bits) always pass; a UUID or `openssl rand -hex 16` does too.
 */
export function weakTokenReason(token: string): string | undefined {
  if (token.length >= MIN_TOKEN_LENGTH && new Set(token).size >= MIN_TOKEN_DISTINCT_CHARACTERS)
    return undefined;
  return `token: at least ${MIN_TOKEN_LENGTH} characters with at least ${MIN_TOKEN_DISTINCT_CHARACTERS} different ones (a UUID, or openssl rand -hex 16), or leave it out to get a generated one: a short or repetitive token can be guessed`;
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
