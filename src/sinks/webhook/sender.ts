/**
 * One webhook HTTP POST with a hard timeout, over keep-alive connections (undici). Redirects are not
 * followed (a 3xx is a failed attempt): the signed body goes only where it was configured to go.
 *
 * Requests that carry the same `orderKey` (one instance's queue) share one connection and are pipelined
 * on it (HTTP/1.1, up to `pipelining` unanswered at once): the receiver reads them in the order they were
 * sent, which separate connections would not guarantee. Each key has a connection of its own, up to
 * `maxConnectionsPerOrigin` per receiver; beyond that, keys share the least used ones (a connection keeps
 * the order of every key on it). Requests without a key use a shared pool.
 */
import { isIP, type LookupFunction } from 'node:net';
import { rootCertificates } from 'node:tls';
import type * as UndiciModule from 'undici';
import type { Agent, Client, buildConnector, Dispatcher } from 'undici';
import { isPrivateAddress } from '../../domain/network.ts';
import { PRIVATE_NETWORKS_HINT } from '../../domain/webhook-url.ts';
import { publicOnlyLookup } from './address-guard.ts';

export interface SendRequest {
  readonly url: string;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Aborts the request (shutdown): the result is `aborted`, and the attempt does not count. */
  readonly signal?: AbortSignal;
  /**
   * The operator's own receiver (WEBHOOK_GLOBAL_URL): reached wherever it points. Never set for a tenant's
   * URL, whatever it says: a tenant whose webhook names the same URL must not reach a private address by it.
   */
  readonly trusted?: boolean;
  /** Requests with the same key go over one connection, in the order `send` is called. */
  readonly orderKey?: string;
  /** Runs once the request has its place on its connection (the next one of the same key may follow). */
  readonly onQueued?: () => void;
  /**
   * The timeout starts when this settles (the answer to the request before it on a pipelined connection):
   * a receiver that works through a connection's requests one after another answers the eighth only after
   * the seven before it, which must not count against the eighth's time.
   */
  readonly timeoutFrom?: Promise<unknown>;
}

export type SendResult =
  | { readonly ok: true; readonly statusCode: number; readonly durationMs: number }
  | {
      readonly ok: false;
      /** null when no response arrived (network error, timeout). */
      readonly statusCode: number | null;
      readonly error: string;
      readonly durationMs: number;
      /** Seconds from a Retry-After header (429/503), when given. */
      readonly retryAfterSeconds?: number;
      /** Cut short by `signal` (shutdown): not an answer of the receiver, not an attempt. */
      readonly aborted?: true;
    };

const MAX_ERROR_BODY = 300;
/** An error answer's body is read this far (for its first 300 characters); beyond, the connection is cut. */
const MAX_DRAINED_BODY = 64 * 1024;
/** A queue's connection is closed once it has gone this long without a request (checked every half of it). */
const ORDERED_IDLE_MS = 60_000;
/**
 * How long past its timeout a request may stay unsettled before its connection is taken for wedged,
 * destroyed and replaced: the queue then moves on whatever state the HTTP client is in.
 */
const WEDGED_GRACE_MS = 2_000;

export interface SenderPolicy {
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: when false, only public addresses are reached. Default true. */
  readonly allowPrivateNetworks?: boolean;
  /** Unanswered requests on one ordered connection (WEBHOOK_PIPELINE). Default 1. */
  readonly pipelining?: number;
  /** Ordered connections to one origin (as many instances as there are, up to this). Default 256. */
  readonly maxConnectionsPerOrigin?: number;
  /** Certificates (PEM) trusted beside the system's roots (WEBHOOK_CA_FILE): receivers on a private CA. */
  readonly extraCaCertificates?: readonly string[];
}

interface OrderedConnection {
  readonly client: Client;
  /** `g` or `o` (guarded or not) and the origin: the pool it counts against. */
  readonly pool: string;
  /** Keys sending over it. */
  users: number;
  lastUsed: number;
  inFlight: number;
}

class TimedOut extends Error {}
class Wedged extends Error {}

/**
 * A connect failure as undici should see it. undici's client treats one TLS failure apart, a certificate
 * that names another host (ERR_TLS_CERT_ALTNAME_INVALID): it fails the queued requests without resetting
 * its running count, so on a pipelined connection the next failed connect throws an AssertionError from a
 * socket callback (the process exits), or the client stops settling its requests. Under another code the
 * failure takes the common path, which fails every queued request and leaves the client usable. The
 * message and the original error (as `cause`) are kept for the delivery log.
 */
export class ConnectFailed extends Error {
  override readonly name = 'ConnectFailed';
  readonly code = 'ZW_WEBHOOK_CONNECT_FAILED';
  constructor(cause: Error) {
    super(cause.message, { cause });
  }
}

type Undici = typeof UndiciModule;

/** undici's connector, with every connect failure passed on as a ConnectFailed. */
function connector(
  undici: Undici,
  options: { lookup?: LookupFunction; ca?: readonly string[] },
): buildConnector.connector {
  const connect = undici.buildConnector({
    ...(options.lookup ? { lookup: options.lookup } : {}),
    ...(options.ca ? { ca: [...options.ca] } : {}),
  });
  return (connectOptions, callback) => {
    try {
      connect(connectOptions, (error, socket) => {
        if (error) callback(new ConnectFailed(error), null);
        else callback(null, socket!);
      });
    } catch (error) {
      callback(new ConnectFailed(error instanceof Error ? error : new Error(String(error))), null);
    }
  };
}

/** The HTTP client, made on the first request: a server that sends no webhook never loads undici. */
interface Transport {
  readonly undici: Undici;
  readonly open: buildConnector.connector;
  // Separate pools: a tenant's request must never reuse a socket opened for a trusted private URL.
  readonly guarded: buildConnector.connector;
  readonly shared: Agent;
  readonly guardedShared: Agent;
}

export class WebhookSender {
  private readonly ca: readonly string[] | undefined;
  private transport: Promise<Transport> | undefined;
  private closed = false;
  /** Which connection each key (with its pool) sends over. */
  private readonly ordered = new Map<string, OrderedConnection>();
  private readonly pools = new Map<string, OrderedConnection[]>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly policy: SenderPolicy = {}) {
    this.ca = policy.extraCaCertificates?.length
      ? [...rootCertificates, ...policy.extraCaCertificates]
      : undefined;
    this.sweep = setInterval(() => this.closeIdle(), ORDERED_IDLE_MS / 2);
    this.sweep.unref();
  }

  /** Every request awaits it, loaded or not, so requests keep the order `send` was called in. */
  private transportReady(): Promise<Transport> {
    this.transport ??= import('undici').then((undici) => {
      const open = connector(undici, this.ca ? { ca: this.ca } : {});
      const guarded = connector(undici, { lookup: publicOnlyLookup, ...(this.ca ? { ca: this.ca } : {}) });
      const loaded: Transport = {
        undici,
        open,
        guarded,
        shared: new undici.Agent({ connections: 256, connect: open }),
        guardedShared: new undici.Agent({ connections: 256, connect: guarded }),
      };
      // A send after close() gets agents that are gone already, as it did before they loaded lazily.
      if (this.closed) this.destroyShared(loaded);
      return loaded;
    });
    return this.transport;
  }

  async send(request: SendRequest): Promise<SendResult> {
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return { ok: false, statusCode: null, error: `invalid URL`, durationMs: 0 };
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return { ok: false, statusCode: null, error: `unsupported protocol ${url.protocol}`, durationMs: 0 };
    }
    const guarded = this.policy.allowPrivateNetworks === false && request.trusted !== true;
    const literal = url.hostname.replace(/^\[|\]$/g, '');
    if (guarded && isIP(literal) && isPrivateAddress(literal)) {
      return {
        ok: false,
        statusCode: null,
        error: `${literal} is a private, loopback or link-local address: ${PRIVATE_NETWORKS_HINT}`,
        durationMs: 0,
      };
    }
    const aborted = (): SendResult => ({
      ok: false,
      statusCode: null,
      error: 'aborted: shutting down',
      durationMs: elapsed(),
      aborted: true,
    });
    const transport = await this.transportReady();
    if (request.signal?.aborted) return aborted();
    // Shutdown must not wait for a slow receiver: the request is cut and the delivery stays pending.
    const controller = new AbortController();
    const onAbort = (): void => controller.abort();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    let wedgedTimer: NodeJS.Timeout | undefined;
    let onWedged: ((error: Wedged) => void) | undefined;
    const wedged = new Promise<never>((_, reject) => (onWedged = reject));
    wedged.catch(() => undefined);
    let finished = false;
    const arm = (): void => {
      if (finished) return;
      timer = setTimeout(() => controller.abort(new TimedOut()), request.timeoutMs);
      wedgedTimer = setTimeout(() => onWedged?.(new Wedged()), request.timeoutMs + WEDGED_GRACE_MS);
    };
    if (request.timeoutFrom) request.timeoutFrom.then(arm, arm);
    else arm();
    const connection = request.orderKey
      ? this.orderedConnection(transport, request.orderKey, url, guarded)
      : undefined;
    if (connection) connection.inFlight += 1;
    try {
      return await Promise.race([
        this.exchange(transport, request, url, connection, guarded, controller.signal, elapsed),
        wedged,
      ]);
    } catch (error) {
      // Not settled after its abort: whatever the connection holds is lost to this queue.
      if (error instanceof Wedged && connection) this.retire(connection);
      if (error instanceof Wedged || controller.signal.reason instanceof TimedOut) {
        return {
          ok: false,
          statusCode: null,
          error: `timeout after ${request.timeoutMs} ms`,
          durationMs: elapsed(),
        };
      }
      if (request.signal?.aborted) return aborted();
      return { ok: false, statusCode: null, error: describe(error), durationMs: elapsed() };
    } finally {
      finished = true;
      clearTimeout(timer);
      clearTimeout(wedgedTimer);
      request.signal?.removeEventListener('abort', onAbort);
      if (connection) {
        connection.inFlight -= 1;
        connection.lastUsed = Date.now();
      }
    }
  }

  /** The request and its answer; throws what the HTTP client throws. */
  private async exchange(
    transport: Transport,
    request: SendRequest,
    url: URL,
    connection: OrderedConnection | undefined,
    guarded: boolean,
    signal: AbortSignal,
    elapsed: () => number,
  ): Promise<SendResult> {
    const dispatcher: Dispatcher =
      connection?.client ?? (guarded ? transport.guardedShared : transport.shared);
    const pending = dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'zapwire-webhook/1',
        ...request.headers,
      },
      body: Buffer.from(request.body, 'utf8'),
      signal,
      // Every delivery carries its event id (receivers deduplicate by it): safe to pipeline, and to send
      // again when a connection drops before its answer.
      idempotent: true,
      blocking: false,
    });
    request.onQueued?.();
    const response = await pending;
    const { statusCode } = response;
    if (statusCode >= 200 && statusCode < 300) {
      await response.body.dump();
      return { ok: true, statusCode, durationMs: elapsed() };
    }
    const text = (await readSome(response.body)).slice(0, MAX_ERROR_BODY).trim();
    const retryAfter = Number(response.headers['retry-after']);
    return {
      ok: false,
      statusCode,
      error: `HTTP ${statusCode}${text ? `: ${text}` : ''}`,
      durationMs: elapsed(),
      ...(Number.isFinite(retryAfter) && retryAfter >= 0 ? { retryAfterSeconds: retryAfter } : {}),
    };
  }

  /** Destroys a connection and forgets it: its keys get a new one on their next request. */
  private retire(connection: OrderedConnection): void {
    for (const [id, assigned] of this.ordered) if (assigned === connection) this.ordered.delete(id);
    const connections = this.pools.get(connection.pool);
    if (connections) {
      const rest = connections.filter((c) => c !== connection);
      if (rest.length > 0) this.pools.set(connection.pool, rest);
      else this.pools.delete(connection.pool);
    }
    void connection.client.destroy().catch(() => undefined);
  }

  close(): void {
    clearInterval(this.sweep);
    for (const connections of this.pools.values()) {
      for (const { client } of connections) void client.destroy().catch(() => undefined);
    }
    this.pools.clear();
    this.ordered.clear();
    this.closed = true;
    void this.transport?.then((transport) => this.destroyShared(transport));
  }

  private destroyShared(transport: Transport): void {
    void transport.shared.destroy().catch(() => undefined);
    void transport.guardedShared.destroy().catch(() => undefined);
  }

  private orderedConnection(
    transport: Transport,
    key: string,
    url: URL,
    guarded: boolean,
  ): OrderedConnection {
    const pool = `${guarded ? 'g' : 'o'}\u0000${url.origin}`;
    const id = `${pool}\u0000${key}`;
    const assigned = this.ordered.get(id);
    if (assigned) return assigned;
    const connections = this.pools.get(pool) ?? [];
    this.pools.set(pool, connections);
    let connection: OrderedConnection;
    if (connections.length < (this.policy.maxConnectionsPerOrigin ?? 256)) {
      connection = {
        client: new transport.undici.Client(url.origin, {
          pipelining: Math.max(1, this.policy.pipelining ?? 1),
          connect: guarded ? transport.guarded : transport.open,
        }),
        pool,
        users: 0,
        lastUsed: Date.now(),
        inFlight: 0,
      };
      connections.push(connection);
    } else {
      connection = connections.reduce((least, c) => (c.users < least.users ? c : least));
    }
    connection.users += 1;
    this.ordered.set(id, connection);
    return connection;
  }

  private closeIdle(): void {
    const before = Date.now() - ORDERED_IDLE_MS;
    const idle = new Set<OrderedConnection>();
    for (const connections of this.pools.values()) {
      for (const c of connections) if (c.inFlight === 0 && c.lastUsed <= before) idle.add(c);
    }
    if (idle.size === 0) return;
    for (const [id, connection] of this.ordered) if (idle.has(connection)) this.ordered.delete(id);
    for (const [pool, connections] of this.pools) {
      const open = connections.filter((c) => !idle.has(c));
      if (open.length > 0) this.pools.set(pool, open);
      else this.pools.delete(pool);
    }
    for (const connection of idle) void connection.client.close().catch(() => undefined);
  }
}

/** The start of an error answer's body; a long one is cut off (and its connection with it). */
async function readSome(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      if (size < MAX_ERROR_BODY) chunks.push(buffer);
      size += buffer.length;
      if (size > MAX_DRAINED_BODY) break;
    }
  } catch {
    // the answer's status is what counts; its body is only for the log
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** undici wraps network errors; the cause (ECONNREFUSED, a blocked address) is what the log should say. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message && !error.message.includes(cause.message)) {
    return `${error.message}: ${cause.message}`;
  }
  return error.message;
}
