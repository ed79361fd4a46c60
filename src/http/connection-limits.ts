/**
 * What the HTTP server does with clients that hold connections instead of sending requests: a request
 * (headers and body) must arrive whole within `requestTimeoutMs` (headers within at most 10 s of it), at
 * most `maxConnections` are open at once and at most `maxConnectionsPerAddress` from one client address,
 * and a request refused before its body was read (a wrong key) has its connection closed with the answer,
 * so a body sent one byte at a time cannot keep it open. Everything Node's parser refuses before Fastify
 * sees a request (431, malformed requests, a request not received in time) is answered in the profile's
 * error shape. docs/security.md, "Slow clients and connection caps".
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { clientKeyOf } from './client-address.ts';

export interface ConnectionLimits {
  /** HTTP_REQUEST_TIMEOUT_MS */
  readonly requestTimeoutMs: number;
  /** HTTP_MAX_CONNECTIONS */
  readonly maxConnections: number;
  /** HTTP_MAX_CONNECTIONS_PER_ADDRESS */
  readonly maxConnectionsPerAddress: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  requestTimeoutMs: 30_000,
  maxConnections: 1024,
  maxConnectionsPerAddress: 64,
};

/** Headers are small: a client that has not sent them within this long is holding the connection. */
const MAX_HEADERS_TIMEOUT_MS = 10_000;

/** The Node http.Server options that bound how long a request may take to arrive. */
export function requestTimeouts(limits: ConnectionLimits): {
  requestTimeout: number;
  headersTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: Math.min(limits.requestTimeoutMs, MAX_HEADERS_TIMEOUT_MS),
    // Node enforces both timeouts when it walks its connections, every 30 s by default: a slow request
    // would outlive its timeout by up to that much.
    connectionsCheckingInterval: Math.max(250, Math.min(1_000, Math.floor(limits.requestTimeoutMs / 4))),
  };
}

/** An error answer written straight to the socket, in the profile's body shape. */
export type ClientErrorBody = (code: string, message: string) => unknown;

const REASONS: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/**
 * Fastify's `clientErrorHandler`: Node's parser refused the bytes on a connection, or the request did not
 * arrive in time. Answers once (never after an answer already started on this connection) and closes.
 */
export function clientErrorHandler(limits: ConnectionLimits, body: ClientErrorBody) {
  return function (this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const refusal = refusalOf(error, limits);
    this.log.debug({ err: error, statusCode: refusal.status }, 'refused before routing');
    // Node sets _httpMessage while an answer on this connection is being written: a second status line
    // would corrupt it. Only the socket is closed then.
    const answering = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!socket.writable || answering?.headersSent === true) {
      socket.destroy();
      return;
    }
    const text = JSON.stringify(body(refusal.code, refusal.message));
    socket.end(
      `HTTP/1.1 ${refusal.status} ${REASONS[refusal.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
    // A client that does not read its answer does not keep the socket either.
    setTimeout(() => socket.destroy(), 1_000).unref();
  };
}

function refusalOf(
  error: NodeJS.ErrnoException,
  limits: ConnectionLimits,
): { status: number; code: string; message: string } {
  if (error.code === 'HPE_HEADER_OVERFLOW')
    return {
      status: 431,
      code: 'ZW_ERR_HEADERS_TOO_LARGE',
      message: 'request headers too large: at most 16 KiB of headers',
    };
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return {
      status: 408,
      code: 'ZW_ERR_REQUEST_TIMEOUT',
      message: `the request did not arrive within ${Math.ceil(limits.requestTimeoutMs / 1000)} s (HTTP_REQUEST_TIMEOUT_MS): send it whole, then wait for the answer`,
    };
  return {
    status: 400,
    code: 'ZW_ERR_BAD_REQUEST',
    message: `malformed HTTP request${error.code?.startsWith('HPE_') ? ` (${error.code})` : ''}: send HTTP/1.1`,
  };
}

/**
 * Caps open connections (WebSockets included), overall and per client address: a connection over a cap
 * is closed as soon as it is accepted. Connections from a trusted proxy carry many clients: only the
 * overall cap applies to them.
 */
export function capConnections(
  server: Server,
  limits: ConnectionLimits,
  isTrustedProxy: (address: string) => boolean,
): void {
  server.maxConnections = limits.maxConnections;
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || isTrustedProxy(address)) return;
    const key = clientKeyOf(address);
    const count = (open.get(key) ?? 0) + 1;
    if (count > limits.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    open.set(key, count);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left > 0) open.set(key, left);
      else open.delete(key);
    });
  });
}

/**
 * An answer sent before the request's body was read (auth refuses before parsing) closes the connection:
 * otherwise Node keeps reading whatever the client still sends, at whatever pace it sends it.
 */
export function closeUnreadRequests(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply) => {
    if (request.raw.complete === false && !reply.hasHeader('connection'))
      void reply.header('connection', 'close');
  });
}
