/** Crypto primitives in the shapes WhatsApp uses: raw 32-byte Curve25519 keys, XEdDSA, HKDF, AES-GCM. */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, pbkdf2 } from 'node:crypto';
import { curve } from './wa.ts';

/** A Curve25519 key pair with a raw 32-byte public key (no 0x05 type prefix). */
export interface KeyPair {
  readonly public: Buffer;
  readonly private: Buffer;
}

const KEY_TYPE = Buffer.from([5]);

export function generateKeyPair(): KeyPair {
  const { pubKey, privKey } = curve.generateKeyPair();
  return { public: Buffer.from(pubKey).subarray(1), private: Buffer.from(privKey) };
}

/** Adds the 0x05 key-type byte Signal expects in front of a raw public key. */
export function signalPublicKey(raw: Uint8Array): Buffer {
  return raw.length === 33 ? Buffer.from(raw) : Buffer.concat([KEY_TYPE, raw]);
}

export function sharedKey(privateKey: Buffer, publicKey: Uint8Array): Buffer {
  return Buffer.from(curve.calculateAgreement(signalPublicKey(publicKey), privateKey));
}

export function sign(privateKey: Buffer, message: Uint8Array): Buffer {
  return Buffer.from(curve.calculateSignature(privateKey, message));
}

export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    return curve.verifySignature(signalPublicKey(publicKey), message, signature);
  } catch {
    return false;
  }
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export function hmacSha256(data: Uint8Array, key: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function hkdf(ikm: Uint8Array, length: number, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info), length));
}

const GCM_TAG = 16;

export function aesGcmEncrypt(
  plaintext: Uint8Array,
  key: Uint8Array,
  iv: Uint8Array,
  aad: Uint8Array,
): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

export function aesGcmDecrypt(
  ciphertext: Uint8Array,
  key: Uint8Array,
  iv: Uint8Array,
  aad: Uint8Array,
): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG));
  return Buffer.concat([
    decipher.update(ciphertext.subarray(0, ciphertext.length - GCM_TAG)),
    decipher.final(),
  ]);
}

export function aesCtr(data: Uint8Array, key: Uint8Array, iv: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

/** The pairing-code key: PBKDF2-SHA256 with 2^17 iterations, as Baileys' `derivePairingCodeKey`. */
export function pairingCodeKey(code: string, salt: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(code, 'utf8'), salt, 2 << 16, 32, 'sha256', (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}
