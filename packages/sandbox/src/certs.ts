/**
 * The sandbox's Noise certificate chain. Baileys trusts a server when its chain is rooted in
 * `WA_CERT_DETAILS.PUBLIC_KEY`: an intermediate certificate signed by the root (issuer serial 0) and a
 * leaf signed by the intermediate. The sandbox is its own "test CA": a fixed, publicly known root key
 * (so the value to export stays the same across restarts and several sandboxes in one process agree),
 * and a fresh intermediate and server key per start.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { generateKeyPair, sha256, sign, type KeyPair } from './crypto.ts';
import { proto } from './wa.ts';

/** Anyone can derive this key: it only ever vouches for local test servers, never for WhatsApp. */
const TEST_ROOT_SEED = 'zapwire sandbox test root key v1 (not a secret)';

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** A key pair from 32 seed bytes (clamped as Curve25519 expects). */
export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  const priv = Buffer.from(seed.subarray(0, 32));
  priv[0] = priv[0]! & 248;
  priv[31] = (priv[31]! & 127) | 64;
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, priv]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { public: Buffer.from(spki.subarray(spki.length - 32)), private: priv };
}

export function testRootKeyPair(): KeyPair {
  return keyPairFromSeed(sha256(Buffer.from(TEST_ROOT_SEED)));
}

export interface ServerIdentity {
  readonly rootPublicKey: Buffer;
  /** The server's Noise static key, certified by the leaf. */
  readonly staticKey: KeyPair;
  /** Encoded `CertChain`, sent (encrypted) in every server hello. */
  readonly certChain: Buffer;
}

const INTERMEDIATE_SERIAL = 1;
const LEAF_SERIAL = 2;

export function createServerIdentity(root: KeyPair = testRootKeyPair()): ServerIdentity {
  const intermediate = generateKeyPair();
  const staticKey = generateKeyPair();
  const now = Math.floor(Date.now() / 1000);
  const validity = { notBefore: now - 60, notAfter: now + 10 * 365 * 24 * 3600 };
  const intermediateDetails = proto.CertChain.NoiseCertificate.Details.encode({
    serial: INTERMEDIATE_SERIAL,
    issuerSerial: 0, // Baileys requires WA_CERT_DETAILS.SERIAL (0) here
    key: intermediate.public,
    ...validity,
  }).finish();
  const leafDetails = proto.CertChain.NoiseCertificate.Details.encode({
    serial: LEAF_SERIAL,
    issuerSerial: INTERMEDIATE_SERIAL,
    key: staticKey.public,
    ...validity,
  }).finish();
  const certChain = proto.CertChain.encode({
    intermediate: { details: intermediateDetails, signature: sign(root.private, intermediateDetails) },
    leaf: { details: leafDetails, signature: sign(intermediate.private, leafDetails) },
  }).finish();
  return { rootPublicKey: root.public, staticKey, certChain: Buffer.from(certChain) };
}
