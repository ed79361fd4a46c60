/**
 * A simulated device's Signal side: identity, signed prekey, one-time prekeys minted on demand, and an
 * in-memory libsignal store. Simulated phones use it to build sessions from the bundles the server
 * hands out and to encrypt and decrypt `proto.Message`s exactly as a real peer would.
 */
import { randomInt } from 'node:crypto';
import { generateKeyPair, sign, signalPublicKey, type KeyPair } from './crypto.ts';
import {
  ProtocolAddress,
  SessionBuilder,
  SessionCipher,
  SessionRecord,
  proto,
  type SignalStorage,
} from './wa.ts';

/** What a device publishes: the server hands this out to anyone starting a session with it. */
export interface PreKeyBundle {
  readonly registrationId: number;
  /** Raw 32-byte identity key. */
  readonly identityKey: Buffer;
  readonly signedPreKey: { readonly keyId: number; readonly publicKey: Buffer; readonly signature: Buffer };
  readonly preKey?: { readonly keyId: number; readonly publicKey: Buffer };
}

export type CipherType = 'pkmsg' | 'msg';

interface LibsignalKeyPair {
  pubKey: Buffer;
  privKey: Buffer;
}

function toLibsignal(pair: KeyPair): LibsignalKeyPair {
  return { pubKey: signalPublicKey(pair.public), privKey: pair.private };
}

/** Random padding of 1–16 bytes, each holding the pad length, as WhatsApp appends before encrypting. */
export function padMessage(message: proto.IMessage): Buffer {
  const pad = randomInt(1, 17);
  return Buffer.concat([proto.Message.encode(message).finish(), Buffer.alloc(pad, pad)]);
}

export function unpadMessage(data: Uint8Array): proto.Message {
  const pad = data[data.length - 1] ?? 0;
  if (pad === 0 || pad > data.length) throw new Error('invalid message padding');
  return proto.Message.decode(data.subarray(0, data.length - pad));
}

export class SignalDevice {
  readonly identity: KeyPair;
  readonly registrationId: number;
  readonly signedPreKey: { readonly keyId: number; readonly keyPair: KeyPair; readonly signature: Buffer };
  /** Every one-time prekey ever handed out keeps its private half: a peer may start over with any of them. */
  private readonly preKeys = new Map<number, KeyPair>();
  private nextPreKeyId = 1;
  /** Serialized records, so a failed decryption never leaves a half-updated session behind. */
  private readonly sessions = new Map<string, ReturnType<SessionRecord['serialize']>>();
  private readonly storage: SignalStorage;

  constructor(identity: KeyPair = generateKeyPair()) {
    this.identity = identity;
    this.registrationId = randomInt(1, 16381);
    const signed = generateKeyPair();
    this.signedPreKey = {
      keyId: 1,
      keyPair: signed,
      signature: sign(identity.private, signalPublicKey(signed.public)),
    };
    this.storage = this.makeStorage();
  }

  /** A bundle with a fresh one-time prekey. */
  bundle(withPreKey = true): PreKeyBundle {
    const base = {
      registrationId: this.registrationId,
      identityKey: this.identity.public,
      signedPreKey: {
        keyId: this.signedPreKey.keyId,
        publicKey: this.signedPreKey.keyPair.public,
        signature: this.signedPreKey.signature,
      },
    };
    if (!withPreKey) return base;
    const keyId = this.nextPreKeyId++;
    const pair = generateKeyPair();
    this.preKeys.set(keyId, pair);
    return { ...base, preKey: { keyId, publicKey: pair.public } };
  }

  hasSession(address: string): boolean {
    const stored = this.sessions.get(address);
    return !!stored && SessionRecord.deserialize(stored).haveOpenSession();
  }

  forgetSession(address: string): void {
    this.sessions.delete(address);
  }

  async startSession(address: string, bundle: PreKeyBundle): Promise<void> {
    await new SessionBuilder(this.storage, toAddress(address)).initOutgoing({
      registrationId: bundle.registrationId,
      identityKey: signalPublicKey(bundle.identityKey),
      signedPreKey: {
        keyId: bundle.signedPreKey.keyId,
        publicKey: signalPublicKey(bundle.signedPreKey.publicKey),
        signature: bundle.signedPreKey.signature,
      },
      // libsignal accepts a bundle without a one-time prekey; its typings do not say so.
      preKey: (bundle.preKey
        ? { keyId: bundle.preKey.keyId, publicKey: signalPublicKey(bundle.preKey.publicKey) }
        : undefined) as unknown as { keyId: number; publicKey: Uint8Array },
    });
  }

  async encrypt(address: string, plaintext: Buffer): Promise<{ type: CipherType; ciphertext: Buffer }> {
    const { type, body } = (await new SessionCipher(this.storage, toAddress(address)).encrypt(plaintext)) as {
      type: number;
      body: string | Uint8Array;
    };
    const ciphertext = typeof body === 'string' ? Buffer.from(body, 'binary') : Buffer.from(body);
    return { type: type === 3 ? 'pkmsg' : 'msg', ciphertext };
  }

  async decrypt(address: string, type: CipherType, ciphertext: Uint8Array): Promise<Buffer> {
    const cipher = new SessionCipher(this.storage, toAddress(address));
    const data = Buffer.from(ciphertext);
    return type === 'pkmsg' ? cipher.decryptPreKeyWhisperMessage(data) : cipher.decryptWhisperMessage(data);
  }

  private makeStorage(): SignalStorage {
    const identity = toLibsignal(this.identity);
    const signed = toLibsignal(this.signedPreKey.keyPair);
    return {
      loadSession: async (id) => {
        const stored = this.sessions.get(id);
        return stored ? SessionRecord.deserialize(stored) : undefined;
      },
      storeSession: async (id, record) => {
        this.sessions.set(id, record.serialize());
      },
      // Trust on first use, like WhatsApp clients.
      isTrustedIdentity: () => true,
      loadPreKey: async (id) => {
        const pair = this.preKeys.get(Number(id));
        return pair ? toLibsignal(pair) : undefined;
      },
      removePreKey: () => undefined,
      loadSignedPreKey: () => signed,
      getOurRegistrationId: () => this.registrationId,
      getOurIdentity: () => identity,
    };
  }
}

function toAddress(address: string): ProtocolAddress {
  const dot = address.lastIndexOf('.');
  return new ProtocolAddress(address.slice(0, dot), Number(address.slice(dot + 1)));
}
