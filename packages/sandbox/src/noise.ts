/**
 * Server side of WhatsApp's Noise XX handshake: the mirror of Baileys' `Utils/noise-handler.js`. Same
 * hash, salt and key schedule; the AES-GCM IV is a counter, reset at each key mix during the
 * handshake and per direction afterwards.
 */
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  generateKeyPair,
  hkdf,
  sha256,
  sharedKey,
  type KeyPair,
} from './crypto.ts';
import { proto } from './wa.ts';

const NOISE_MODE = Buffer.from('Noise_XX_25519_AESGCM_SHA256\0\0\0\0');
/** "WA", protocol version 6, dictionary version 3: the prologue every client frame stream starts with. */
export const NOISE_WA_HEADER = Buffer.from([87, 65, 6, 3]);

function counterIv(counter: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(counter >>> 0, 8);
  return iv;
}

/** Encrypts and decrypts frames once the handshake is done. */
export class NoiseTransport {
  private readCounter = 0;
  private writeCounter = 0;
  constructor(
    private readonly encKey: Buffer,
    private readonly decKey: Buffer,
  ) {}
  encrypt(plaintext: Uint8Array): Buffer {
    return aesGcmEncrypt(plaintext, this.encKey, counterIv(this.writeCounter++), Buffer.alloc(0));
  }
  decrypt(ciphertext: Uint8Array): Buffer {
    return aesGcmDecrypt(ciphertext, this.decKey, counterIv(this.readCounter++), Buffer.alloc(0));
  }
}

export interface HandshakeResult {
  readonly clientStaticKey: Buffer;
  readonly payload: proto.ClientPayload;
  readonly transport: NoiseTransport;
}

export class ServerHandshake {
  private hash: Buffer = NOISE_MODE;
  private salt: Buffer = NOISE_MODE;
  private key: Buffer = NOISE_MODE;
  private counter = 0;
  private readonly ephemeral: KeyPair = generateKeyPair();
  private clientEphemeral: Buffer | undefined;

  constructor(
    private readonly staticKey: KeyPair,
    private readonly certChain: Buffer,
  ) {
    this.authenticate(NOISE_WA_HEADER);
  }

  /** Answers the client hello with the server hello (ephemeral, encrypted static key, certificates). */
  respondToHello(frame: Uint8Array): Buffer {
    const hello = proto.HandshakeMessage.decode(frame).clientHello;
    if (!hello?.ephemeral || hello.ephemeral.length !== 32)
      throw new Error('client hello without an ephemeral key');
    this.clientEphemeral = Buffer.from(hello.ephemeral);
    this.authenticate(this.clientEphemeral);
    this.authenticate(this.ephemeral.public);
    this.mixIntoKey(sharedKey(this.ephemeral.private, this.clientEphemeral));
    const staticEnc = this.encrypt(this.staticKey.public);
    this.mixIntoKey(sharedKey(this.staticKey.private, this.clientEphemeral));
    const payloadEnc = this.encrypt(this.certChain);
    return Buffer.from(
      proto.HandshakeMessage.encode({
        serverHello: { ephemeral: this.ephemeral.public, static: staticEnc, payload: payloadEnc },
      }).finish(),
    );
  }

  /** Reads the client finish: the client's Noise static key and its login or registration payload. */
  finish(frame: Uint8Array): HandshakeResult {
    const finish = proto.HandshakeMessage.decode(frame).clientFinish;
    if (!finish?.static || !finish.payload) throw new Error('client finish without static key or payload');
    const clientStaticKey = this.decrypt(finish.static);
    this.mixIntoKey(sharedKey(this.ephemeral.private, clientStaticKey));
    const payload = proto.ClientPayload.decode(this.decrypt(finish.payload));
    const keys = hkdf(Buffer.alloc(0), 64, this.salt, '');
    // The client writes with the first half and reads with the second.
    const transport = new NoiseTransport(keys.subarray(32), keys.subarray(0, 32));
    return { clientStaticKey, payload, transport };
  }

  private authenticate(data: Uint8Array): void {
    this.hash = sha256(Buffer.concat([this.hash, data]));
  }

  private mixIntoKey(data: Uint8Array): void {
    const out = hkdf(data, 64, this.salt, '');
    this.salt = out.subarray(0, 32);
    this.key = out.subarray(32);
    this.counter = 0;
  }

  private encrypt(plaintext: Uint8Array): Buffer {
    const result = aesGcmEncrypt(plaintext, this.key, counterIv(this.counter++), this.hash);
    this.authenticate(result);
    return result;
  }

  private decrypt(ciphertext: Uint8Array): Buffer {
    const result = aesGcmDecrypt(ciphertext, this.key, counterIv(this.counter++), this.hash);
    this.authenticate(ciphertext);
    return result;
  }
}

/**
 * Splits the client's byte stream into frames: an optional routing-info preamble ("ED", 0, 1, 3-byte
 * length, routing info), the 4-byte "WA" header, then frames with a 3-byte big-endian length.
 */
export class FrameReader {
  private buffer = Buffer.alloc(0);
  private headerSeen = false;

  push(data: Uint8Array): Buffer[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, data]) : Buffer.from(data);
    if (!this.headerSeen && !this.consumeHeader()) return [];
    const frames: Buffer[] = [];
    while (this.buffer.length >= 3) {
      const size = (this.buffer[0]! << 16) | (this.buffer[1]! << 8) | this.buffer[2]!;
      if (this.buffer.length < size + 3) break;
      frames.push(this.buffer.subarray(3, size + 3));
      this.buffer = this.buffer.subarray(size + 3);
    }
    return frames;
  }

  private consumeHeader(): boolean {
    let offset = 0;
    if (this.buffer[0] === 0x45 && this.buffer[1] === 0x44) {
      if (this.buffer.length < 7) return false;
      const length = (this.buffer[4]! << 16) | this.buffer.readUInt16BE(5);
      offset = 7 + length;
    }
    if (this.buffer.length < offset + NOISE_WA_HEADER.length) return false;
    if (
      !this.buffer
        .subarray(offset, offset + 4)
        .subarray(0, 2)
        .equals(NOISE_WA_HEADER.subarray(0, 2))
    ) {
      throw new Error('stream does not start with the WA header');
    }
    this.buffer = this.buffer.subarray(offset + NOISE_WA_HEADER.length);
    this.headerSeen = true;
    return true;
  }
}

export function encodeFrame(data: Uint8Array): Buffer {
  const frame = Buffer.alloc(3 + data.length);
  frame[0] = (data.length >>> 16) & 0xff;
  frame[1] = (data.length >>> 8) & 0xff;
  frame[2] = data.length & 0xff;
  frame.set(data, 3);
  return frame;
}
