/**
 * Clients that hold a server's connections open: a request whose body arrives one byte at a time (the
 * slow-body attack of issue #22), and plain HTTP on a raw socket from a chosen local address (127.0.0.2
 * is another client to a server on 127.0.0.1), for tests that need what fetch does not do.
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

export interface SlowBodyOptions {
  readonly port: number;
  readonly method?: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** The Content-Length announced; the client never sends more than this. */
  readonly contentLength?: number;
  readonly byteEveryMs?: number;
  /** The client gives up (and closes) after this long; the outcome then says the server never closed. */
  readonly giveUpAfterMs: number;
  readonly localAddress?: string;
}

export interface SlowBodyOutcome {
  /** When the server closed the connection, from the first byte sent; undefined if it never did. */
  readonly closedAfterMs: number | undefined;
  /** The status of what the server answered before closing, if anything. */
  readonly status: number | undefined;
  /** The body of that answer. */
  readonly body: string;
  readonly bytesSent: number;
}

/** One request whose body trickles in a byte at a time until the server closes or the client gives up. */
export function slowBody(options: SlowBodyOptions): Promise<SlowBodyOutcome> {
  const contentLength = options.contentLength ?? 4096;
  const head = [
    `${options.method ?? 'POST'} ${options.path} HTTP/1.1`,
    `Host: 127.0.0.1:${options.port}`,
    'Content-Type: application/json',
    `Content-Length: ${contentLength}`,
    ...Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
    '',
    '',
  ].join('\r\n');
  return new Promise((resolve) => {
    const started = Date.now();
    const received: Buffer[] = [];
    let bytesSent = 0;
    let settled = false;
    const socket = connect({
      port: options.port,
      host: '127.0.0.1',
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const settle = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearInterval(trickle);
      clearTimeout(giveUp);
      socket.destroy();
      const answer = Buffer.concat(received).toString('utf8');
      const [headers = '', body = ''] = answer.split('\r\n\r\n');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1];
      resolve({
        closedAfterMs: closed ? Date.now() - started : undefined,
        status: status === undefined ? undefined : Number(status),
        body,
        bytesSent,
      });
    };
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('close', () => settle(true));
    // A reset or a write after the server closed: the server cut the connection.
    socket.on('error', () => settle(true));
    socket.write(head);
    const trickle = setInterval(() => {
      if (bytesSent >= contentLength || socket.destroyed) return;
      socket.write('x');
      bytesSent += 1;
    }, options.byteEveryMs ?? 200);
    const giveUp = setTimeout(() => settle(false), options.giveUpAfterMs);
  });
}

export interface RawAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Bytes written as they are (a request Node's parser may refuse), and what comes back until the server closes. */
export function rawExchange(port: number, bytes: string | Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const answer = Buffer.concat(received).toString('utf8');
      const split = answer.indexOf('\r\n\r\n');
      const lines = answer.slice(0, split < 0 ? answer.length : split).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1]),
        headers,
        body: split < 0 ? '' : answer.slice(split + 4),
      });
    });
    // Not end(): a client that half-closes has its request aborted; the server closes when it is done
    // (send `Connection: close`).
    socket.write(bytes);
  });
}

/** A GET from a chosen local address (another client, as the server sees it). */
export function getFrom(
  localAddress: string,
  port: number,
  path: string,
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: '127.0.0.1', port, path, localAddress, agent: false, timeout: timeoutMs },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end();
  });
}
