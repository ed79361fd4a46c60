/**
 * One client WebSocket: the Noise handshake, then encrypted binary-node stanzas in both directions.
 * What the stanzas mean is the server's business; this class only frames, encrypts, decodes, keeps
 * order, and correlates the few queries the server itself sends (pair-device, pair-success).
 */
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import {
  encodeFrame,
  FrameReader,
  ServerHandshake,
  type HandshakeResult,
  type NoiseTransport,
} from './noise.ts';
import type { ServerIdentity } from './certs.ts';
import type { Companion, CompanionConnection } from './model.ts';
import { node, type BinaryNode } from './nodes.ts';
import { decodeBinaryNode, encodeBinaryNode } from './wa.ts';
import type { SandboxLogger } from './types.ts';

export interface ConnectionHandler {
  /** The handshake finished: decide between registration and login. */
  onHandshake(conn: ClientConnection, result: HandshakeResult): void;
  onStanza(conn: ClientConnection, stanza: BinaryNode): Promise<void>;
  onClose(conn: ClientConnection): void;
}

let connectionCounter = 0;
const HANDSHAKE_TIMEOUT_MS = 20_000;

export class ClientConnection implements CompanionConnection {
  readonly id = ++connectionCounter;
  /** When the socket was accepted (ms since the epoch): a login's start. */
  readonly openedAt = Date.now();
  private readonly frames = new FrameReader();
  private handshake: ServerHandshake | undefined;
  private transport: NoiseTransport | undefined;
  private queue: Promise<void> = Promise.resolve();
  private readonly pending = new Map<
    string,
    { resolve: (n: BinaryNode) => void; reject: (e: Error) => void }
  >();
  private closeTimer: NodeJS.Timeout | undefined;
  private readonly handshakeTimer: NodeJS.Timeout;
  closed = false;
  /** Set when the client sent `passive/active`: from then on stanzas are delivered live. */
  active = false;
  clientStaticKey: Buffer | undefined;
  /** Set once the device logged in. */
  companion: Companion | undefined;

  constructor(
    private readonly ws: WebSocket,
    identity: ServerIdentity,
    private readonly handler: ConnectionHandler,
    private readonly logger: SandboxLogger,
    private readonly closeGraceMs: number,
  ) {
    this.handshake = new ServerHandshake(identity.staticKey, identity.certChain);
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => this.onData(toBuffer(data)));
    ws.on('close', () => this.onSocketClosed());
    ws.on('error', (err) => this.logger.debug('socket error', { conn: this.id, err: String(err) }));
    // A socket that never completes the handshake is dropped, as a real server would.
    this.handshakeTimer = setTimeout(() => {
      if (!this.transport) this.terminate();
    }, HANDSHAKE_TIMEOUT_MS);
    this.handshakeTimer.unref();
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === this.ws.OPEN;
  }

  send(stanza: BinaryNode): void {
    if (!this.transport || !this.isOpen) return;
    this.companion?.log.push({ dir: 'out', tag: stanza.tag, attrs: stanza.attrs, at: Date.now() });
    this.ws.send(encodeFrame(this.transport.encrypt(encodeBinaryNode(stanza))));
  }

  /** Sends an iq and resolves with the client's answer (any stanza with the same id). */
  query(stanza: BinaryNode, timeoutMs = 10_000): Promise<BinaryNode> {
    const id = stanza.attrs.id ?? randomBytes(6).toString('hex');
    stanza.attrs.id = id;
    return new Promise<BinaryNode>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to ${stanza.tag} ${id}`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (n) => {
          clearTimeout(timer);
          resolve(n);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.send(stanza);
    });
  }

  /**
   * Ends the stream the way WhatsApp does: the error stanza, then the client closes the socket itself
   * (Baileys reads the code from the stanza; closing first would race it into a plain 428).
   */
  streamError(stanza: BinaryNode): void {
    this.send(stanza);
    this.closeAfterGrace();
  }

  closeAfterGrace(): void {
    if (this.closeTimer || this.closed) return;
    this.closeTimer = setTimeout(() => this.terminate(), this.closeGraceMs);
    this.closeTimer.unref();
  }

  /** Closes the socket from the server side: Baileys reports 428 (connection closed). */
  close(): void {
    if (this.closed) return;
    this.ws.close();
    this.closeAfterGrace();
  }

  terminate(): void {
    this.ws.terminate();
    this.onSocketClosed();
  }

  private onData(data: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.frames.push(data);
    } catch (err) {
      this.logger.warn('bad frame stream', { conn: this.id, err: String(err) });
      this.terminate();
      return;
    }
    for (const frame of frames) this.onFrame(frame);
  }

  private onFrame(frame: Buffer): void {
    if (this.transport) {
      let plain: Buffer;
      try {
        plain = this.transport.decrypt(frame);
      } catch (err) {
        this.logger.warn('undecryptable frame', { conn: this.id, err: String(err) });
        this.terminate();
        return;
      }
      // Decoding is asynchronous (frames may be compressed); the chain keeps stanzas in order.
      this.queue = this.queue.then(() => this.handleStanza(plain));
      return;
    }
    const handshake = this.handshake;
    if (!handshake) return;
    try {
      if (!this.clientStaticKey && !this.helloAnswered) {
        this.helloAnswered = true;
        this.ws.send(encodeFrame(handshake.respondToHello(frame)));
        return;
      }
      const result = handshake.finish(frame);
      this.handshake = undefined;
      this.transport = result.transport;
      this.clientStaticKey = result.clientStaticKey;
      this.handler.onHandshake(this, result);
    } catch (err) {
      this.logger.warn('handshake failed', { conn: this.id, err: String(err) });
      this.terminate();
    }
  }

  private helloAnswered = false;

  private async handleStanza(plain: Buffer): Promise<void> {
    if (this.closed) return;
    let stanza: BinaryNode;
    try {
      stanza = await decodeBinaryNode(plain);
    } catch (err) {
      this.logger.warn('undecodable stanza', { conn: this.id, err: String(err) });
      return;
    }
    this.companion?.log.push({ dir: 'in', tag: stanza.tag, attrs: stanza.attrs, at: Date.now() });
    const id = stanza.attrs.id;
    const waiter = id !== undefined && stanza.tag === 'iq' ? this.pending.get(id) : undefined;
    if (waiter && (stanza.attrs.type === 'result' || stanza.attrs.type === 'error')) {
      this.pending.delete(id!);
      waiter.resolve(stanza);
      return;
    }
    try {
      await this.handler.onStanza(this, stanza);
    } catch (err) {
      this.logger.error('stanza handler failed', { conn: this.id, tag: stanza.tag, err: String(err) });
    }
  }

  private onSocketClosed(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    if (this.closeTimer) clearTimeout(this.closeTimer);
    for (const waiter of this.pending.values()) waiter.reject(new Error('connection closed'));
    this.pending.clear();
    this.handler.onClose(this);
  }
}

/** `<stream:error>` with an optional code and child. */
export function streamErrorNode(code: number | undefined, reason?: BinaryNode): BinaryNode {
  return node('stream:error', { code }, reason ? [reason] : undefined);
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
