/**
 * A real HTTP webhook receiver on 127.0.0.1 for tests and benchmarks: records every request with its raw
 * body, answers what the test says (a status, a delay, or a function of the request).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawBody: string;
  readonly receivedAt: number;
  /** The sender's port: which connection the request came on. */
  readonly remotePort: number;
  /** The answer it got. */
  readonly status: number;
}

export interface ReceiverAnswer {
  readonly status: number;
  readonly delayMs?: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

export type Responder = (request: Omit<ReceivedRequest, 'status'>, index: number) => ReceiverAnswer;

export class WebhookReceiver {
  readonly requests: ReceivedRequest[] = [];
  private responder: Responder = () => ({ status: 200 });
  private readonly server: http.Server;
  private waiters: Array<() => void> = [];
  /** Called for every request, after it is recorded (benchmarks timestamp here). */
  onRequest: ((request: ReceivedRequest) => void) | undefined;

  private constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const base = {
          method: req.method ?? 'GET',
          path: req.url ?? '/',
          headers: req.headers,
          rawBody: Buffer.concat(chunks).toString('utf8'),
          receivedAt: performance.timeOrigin + performance.now(),
          remotePort: req.socket.remotePort ?? 0,
        };
        const answer = this.responder(base, this.requests.length);
        const recorded: ReceivedRequest = { ...base, status: answer.status };
        this.requests.push(recorded);
        this.onRequest?.(recorded);
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
        const reply = (): void => {
          res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
          res.end(answer.body ?? '');
        };
        if (answer.delayMs) setTimeout(reply, answer.delayMs);
        else reply();
      });
    });
    this.server.keepAliveTimeout = 30_000;
  }

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  respond(responder: Responder | ReceiverAnswer): void {
    this.responder = typeof responder === 'function' ? responder : () => responder;
  }

  /** Requests answered 2xx, optionally only those for one path. */
  accepted(path?: string): ReceivedRequest[] {
    return this.requests.filter((r) => r.status >= 200 && r.status < 300 && (!path || r.path === path));
  }

  /** Parsed bodies of the accepted requests. */
  acceptedBodies<T = Record<string, unknown>>(path?: string): T[] {
    return this.accepted(path).map((r) => JSON.parse(r.rawBody) as T);
  }

  /** Resolves when the predicate holds, checked after each request; rejects after timeoutMs. */
  async waitUntil(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `webhook receiver: timed out after ${timeoutMs} ms waiting for ${what} (${this.requests.length} requests)`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
