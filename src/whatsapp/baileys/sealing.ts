/**
 * Sealing of Baileys' auth state at rest: AES-256-GCM under a key derived from SESSION_ENCRYPTION_KEY,
 * and keyed hashes for the row keys.
 *
 * The session key also seals other instance secrets (src/runtime/secrets.ts), so the auth state uses its
 * own sub-keys (HKDF with distinct labels): a ciphertext of one kind can never be opened as the other.
 * The associated data binds each ciphertext to its row (instance, category, key), so rows cannot be
 * swapped between instances or keys without the open failing.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

const IV_BYTES = 12;
const TAG_BYTES = 16;

export class AuthStateSealer {
  private readonly encryptionKey: Buffer;
  private readonly referenceKey: Buffer;

  constructor(sessionKey: Buffer) {
    if (sessionKey.length !== 32) throw new Error('the session encryption key must be 32 bytes');
    this.encryptionKey = derive(sessionKey, 'zapwire/baileys-auth-state/seal/v1');
    this.referenceKey = derive(sessionKey, 'zapwire/baileys-auth-state/ref/v1');
  }

  /** The row key of a Baileys key: deterministic, but reveals nothing of the id (ids hold phone numbers). */
  reference(category: string, id: string): string {
    return createHmac('sha256', this.referenceKey).update(`${category}\u0000${id}`).digest('base64url');
  }

  seal(plaintext: Buffer, associatedData: string): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.encryptionKey, iv);
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  /** Throws when the ciphertext was altered, moved to another row, or sealed under another key. */
  open(sealed: Buffer, associatedData: string): Buffer {
    if (sealed.length < IV_BYTES + TAG_BYTES) throw new Error('sealed auth state is truncated');
    const decipher = createDecipheriv('aes-256-gcm', this.encryptionKey, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  }
}

function derive(key: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), Buffer.from(label, 'utf8'), 32));
}

/** The associated data of a row. */
export function rowAad(instanceId: string, category: string, reference: string): string {
  return `${instanceId}\u0000${category}\u0000${reference}`;
}
