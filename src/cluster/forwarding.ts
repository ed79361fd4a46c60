/**
 * Any node answers any request: a request that acts on an instance another node owns is sent to that
 * node over HTTP (its advertised address, `InstanceOwner.address`) and its answer relayed as it is.
 * Reads from the shared read model (status, QR, lists, logs, history) stay on the node that got them.
 *
 * Between nodes, a forwarded request carries no client key. The forwarding node has authenticated the
 * caller already; it sends the principal it found (`admin` or `instance:<id>`) and an HMAC-SHA256, keyed
 * with CLUSTER_SECRET, over a version tag, the method, the URL, a SHA-256 of the body, a timestamp, a
 * nonce, its own node id, the target node id, the target's incarnation and the principal (and the
 * client's headers the owner's routes read, PASSED_HEADERS, when present). The owner
 * accepts the request only when the signature holds, the target is itself in its current incarnation
 * (new at every start: the nonces it remembers live in memory, so a run must not accept what an earlier
 * run of the same CLUSTER_NODE_ID saw), the timestamp is within the replay window and the nonce is new. So
 * a captured forwarded request cannot be replayed, not even after the owner restarts, sent to another
 * node, or bent to another method, path, body or principal, and the client's key never leaves the node
 * it was sent to.
 *
 * Which requests go to the owner is each route's own fact: `config.runsOn: 'owner'` (src/http/route-facts.ts)
 * on every command and on the one read of live memory. Everything else runs where it arrives: GET reads
 * come from the shared read model or the shared log, and the writes that say `runsOn: 'any'` write what any
 * node may write (create appends to fresh streams under optimistic versions and placement picks the owner
 * afterwards; the webhook secret is a sealed row, a redelivery or replay a row the node sending webhooks
 * picks up; projection rebuilds run under their own lease; a dead letter's retry goes through this node's
 * reader of its kind; the manager's session is this node's cookie, and its API proxy re-enters this
 * node's routes and so this hook). The instance is the one auth resolved (`request.instance`), and a
 * lease this node holds is known without a read.
 *
 * No loops: a forwarded request is never forwarded again; when its receiver does not own the instance
 * (the lease moved in between) it answers 503 and the client retries. Nobody owning the instance yet, or
 * an owner that does not answer, is a 503 with Retry-After as well.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Errors, ZapwireError } from '../domain/errors.ts';
import type { Principal } from '../domain/principal.ts';
import type { ClusterView, InstanceOwner } from './port.ts';

export const FORWARD_HEADER = {
  from: 'x-zapwire-forward-from',
  to: 'x-zapwire-forward-to',
  toIncarnation: 'x-zapwire-forward-to-incarnation',
  timestamp: 'x-zapwire-forward-ts',
  nonce: 'x-zapwire-forward-nonce',
  principal: 'x-zapwire-forward-principal',
  signature: 'x-zapwire-forward-signature',
} as const;

/** On every relayed answer: the node that served it (operators and tests see where a request ran). */
export const SERVED_BY_HEADER = 'x-zapwire-served-by';

export interface ForwardingOptions {
  readonly cluster: ClusterView;
  /**
   * CLUSTER_SECRET: the same on every node; keys the HMAC of forwarded requests. Without it nothing is
   * forwarded or accepted: a request for an instance another node owns is a 503 that names the owner.
   */
  readonly secret: string | undefined;
  /** How long the owner may take (pairing waits for WhatsApp): 35 s by default. */
  readonly timeoutMs?: number;
  /** How far a forwarded request's timestamp may be from now (clock skew plus transit): 30 s by default. */
  readonly replayWindowMs?: number;
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
}

/** What a verified forwarded request says about itself. */
export interface ForwardedFrom {
  readonly nodeId: string;
  readonly principal: Principal;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set when this request was forwarded by another node and its signature holds (never from a client). */
    forwarded: ForwardedFrom | undefined;
  }
}

export interface SignedParts {
  readonly method: string;
  readonly url: string;
  readonly body: Buffer;
  readonly timestamp: number;
  readonly nonce: string;
  readonly from: string;
  readonly to: string;
  /** The target node's incarnation (ClusterView.incarnation) the request is meant for. */
  readonly toIncarnation: string;
  readonly principal: string;
  /** The client's headers that travel with the request (PASSED_HEADERS), as passedHeadersOf writes them. */
  readonly passed?: string;
}

/**
 * Client headers a route reads besides the body, carried to the owner and signed with the rest: the
 * outbox's (docs/sending.md). Signed only when present, so a request without them signs as before.
 */
export const PASSED_HEADERS = ['idempotency-key', 'prefer'] as const;

export function passedHeadersOf(headers: Record<string, unknown>): string {
  return PASSED_HEADERS.flatMap((name) => {
    const value = headers[name];
    return typeof value === 'string' ? [`${name}=${value}`] : [];
  }).join('\n');
}

export function signForward(secret: string, parts: SignedParts): string {
  const bodyHash = createHash('sha256').update(parts.body).digest('hex');
  return createHmac('sha256', secret)
    .update(
      [
        'zapwire-forward-v2',
        parts.method.toUpperCase(),
        parts.url,
        bodyHash,
        String(parts.timestamp),
        parts.nonce,
        parts.from,
        parts.to,
        parts.toIncarnation,
        parts.principal,
        ...(parts.passed ? [parts.passed] : []),
      ].join('\n'),
    )
    .digest('hex');
}

/** The headers that carry a forwarded request's signed parts and its signature. */
export function forwardHeaders(secret: string, parts: SignedParts): Record<string, string> {
  return {
    [FORWARD_HEADER.from]: parts.from,
    [FORWARD_HEADER.to]: parts.to,
    [FORWARD_HEADER.toIncarnation]: parts.toIncarnation,
    [FORWARD_HEADER.timestamp]: String(parts.timestamp),
    [FORWARD_HEADER.nonce]: parts.nonce,
    [FORWARD_HEADER.principal]: parts.principal,
    [FORWARD_HEADER.signature]: signForward(secret, parts),
  };
}

export function principalHeaderOf(principal: Principal): string {
  return principal.role === 'admin' ? 'admin' : `instance:${principal.instanceId}`;
}

function principalOf(header: string): Principal | undefined {
  if (header === 'admin') return { role: 'admin' };
  const id = /^instance:(.+)$/.exec(header)?.[1];
  return id ? { role: 'instance', instanceId: id } : undefined;
}

const rejected = (why: string): ZapwireError =>
  new ZapwireError('ZW_ERR_UNAUTHORIZED', `forwarded request rejected: ${why}`);

/**
 * Checks forwarded requests on the receiving node. Nonces are remembered (in memory) for twice the replay
 * window, so a request seen once is refused for as long as its timestamp could still pass; a request signed
 * for another incarnation of this node (an earlier run, whose memory is gone) is refused whatever its
 * nonce.
 */
export class ForwardVerifier {
  private readonly seen = new Map<string, number>();
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(
    private readonly secret: string,
    private readonly selfId: string,
    /** This node's current incarnation. */
    private readonly incarnation: () => string,
    options: { replayWindowMs?: number; now?: () => number } = {},
  ) {
    this.windowMs = options.replayWindowMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** The principal a forwarded request carries; throws a 401 when anything does not hold. */
  verify(method: string, url: string, headers: Record<string, unknown>, body: Buffer): ForwardedFrom {
    const header = (name: string): string => {
      const value = headers[name];
      if (typeof value !== 'string' || value === '') throw rejected(`header ${name} missing`);
      return value;
    };
    const from = header(FORWARD_HEADER.from);
    const to = header(FORWARD_HEADER.to);
    const toIncarnation = header(FORWARD_HEADER.toIncarnation);
    const timestamp = Number(header(FORWARD_HEADER.timestamp));
    const nonce = header(FORWARD_HEADER.nonce);
    const principalHeader = header(FORWARD_HEADER.principal);
    const signature = header(FORWARD_HEADER.signature);
    const expected = Buffer.from(
      signForward(this.secret, {
        method,
        url,
        body,
        timestamp,
        nonce,
        from,
        to,
        toIncarnation,
        principal: principalHeader,
        passed: passedHeadersOf(headers),
      }),
      'hex',
    );
    const given = Buffer.from(signature, 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw rejected('bad signature (is CLUSTER_SECRET the same on every node?)');
    if (to !== this.selfId) throw rejected(`addressed to node ${to}, this is ${this.selfId}`);
    // Signed by a node, for a run of this one that is over (a restart with the same CLUSTER_NODE_ID, or a
    // lease that expired): nothing runs. A node that read the owner just before the restart retries.
    if (toIncarnation !== this.incarnation())
      throw Errors.unavailable(
        `forwarded request addressed to an earlier run of node ${this.selfId} (it restarted or rejoined the cluster since): retry`,
        1,
      );
    const now = this.now();
    if (!Number.isFinite(timestamp) || Math.abs(now - timestamp) > this.windowMs)
      throw rejected('timestamp outside the replay window (are the nodes’ clocks in sync?)');
    this.forget(now);
    if (this.seen.has(nonce)) throw rejected('replayed');
    this.seen.set(nonce, now + 2 * this.windowMs);
    const principal = principalOf(principalHeader);
    if (!principal) throw rejected('unknown principal');
    return { nodeId: from, principal };
  }

  private forget(now: number): void {
    for (const [nonce, until] of this.seen) {
      // Insertion order is expiry order: stop at the first live one.
      if (until > now) break;
      this.seen.delete(nonce);
    }
  }
}

const BODY_LIMIT_BYTES = 1024 * 1024;

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buffer.length;
    // The same error Fastify's own limit raises (413), so a large body is answered alike on every node.
    if (size > BODY_LIMIT_BYTES)
      throw Object.assign(new Error('request body too large: the limit is 1 MiB'), {
        code: 'FST_ERR_CTP_BODY_TOO_LARGE',
        statusCode: 413,
      });
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/** Bodies of owner-bound requests as they arrived, before any hook rewrote them (the Evolution GO profile does). */
const rawBodies = new WeakMap<FastifyRequest, Buffer>();

function isOwnerBound(request: FastifyRequest): boolean {
  return request.routeOptions.config.runsOn === 'owner';
}

/** The bytes to send on: the body as it arrived, or (when it was not kept) the parsed body serialised again. */
function bodyBytesOf(request: FastifyRequest): Buffer | undefined {
  const raw = rawBodies.get(request);
  if (raw !== undefined) return raw.length > 0 ? raw : undefined;
  const body = request.body;
  if (body === undefined) return undefined;
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  return Buffer.from(JSON.stringify(body));
}

/**
 * Installs forwarding: verifies forwarded requests (a preParsing hook, to be installed before installAuth,
 * which takes the principal from them) and returns the preHandler that sends an owner-bound request to its
 * owner, to be added after installAuth (whose preHandler resolves `request.instance`).
 */
export function installForwarding(
  app: FastifyInstance,
  options: ForwardingOptions,
): preHandlerAsyncHookHandler {
  const { cluster, secret } = options;
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 35_000;
  const send = options.fetch ?? fetch;
  const verifier =
    secret === undefined
      ? undefined
      : new ForwardVerifier(secret, cluster.selfId, () => cluster.incarnation(), {
          ...(options.replayWindowMs !== undefined ? { replayWindowMs: options.replayWindowMs } : {}),
          now,
        });

  app.decorateRequest('forwarded', undefined);

  app.addHook('preParsing', async (request, _reply, payload) => {
    const signed = request.headers[FORWARD_HEADER.signature] !== undefined;
    if (signed && !verifier) throw rejected('this node has no CLUSTER_SECRET');
    // Kept for forwarding: what the client sent, not what the route's hooks make of it.
    const keep = !signed && verifier !== undefined && isOwnerBound(request);
    if (!signed && !keep) return payload;
    // The signature covers the body: read it here, then hand Fastify the same bytes to parse.
    const body = await readAll(payload);
    if (signed) request.forwarded = verifier!.verify(request.method, request.url, request.headers, body);
    else rawBodies.set(request, body);
    return Readable.from(body.length > 0 ? [body] : []);
  });

  const toOwner: preHandlerAsyncHookHandler = async (request, reply) => {
    if (!isOwnerBound(request)) return;
    const instanceId = request.instance.id;
    // A lease this node holds (in memory, still valid) needs no read: nobody else can hold it now.
    if (cluster.holds(instanceId)) return;
    const owner = await cluster.ownerOf(instanceId);
    if (request.forwarded) {
      // Never forwarded twice: the sender saw this node as the owner; if the lease moved since, retry.
      if (!owner?.self)
        throw Errors.unavailable(
          `instance ${instanceId} is not owned by node ${cluster.selfId} any more (it is moving): retry`,
          1,
        );
      return;
    }
    if (!owner)
      throw Errors.unavailable(
        `no node owns instance ${instanceId} right now (it is being placed or failing over): retry`,
        2,
      );
    if (owner.self) return;
    if (secret === undefined)
      throw Errors.unavailable(
        `instance ${instanceId} is owned by node ${owner.nodeId}; this node cannot forward requests without CLUSTER_SECRET: send it to that node, or set the same CLUSTER_SECRET on every node`,
        5,
      );
    const answer = await forward(request, owner, secret);
    void reply.code(answer.status).header(SERVED_BY_HEADER, owner.nodeId);
    for (const name of ['content-type', 'retry-after']) {
      const value = answer.headers.get(name);
      if (value !== null) void reply.header(name, value);
    }
    return reply.send(answer.body);
  };

  async function forward(
    request: FastifyRequest,
    owner: InstanceOwner,
    secret: string,
  ): Promise<{ status: number; headers: Headers; body: Buffer }> {
    const principal = request.principal;
    if (!principal) throw Errors.unauthorized();
    const body = bodyBytesOf(request);
    const timestamp = now();
    const nonce = randomBytes(16).toString('hex');
    const headers = forwardHeaders(secret, {
      method: request.method,
      url: request.url,
      body: body ?? Buffer.alloc(0),
      timestamp,
      nonce,
      from: cluster.selfId,
      to: owner.nodeId,
      toIncarnation: owner.incarnation,
      principal: principalHeaderOf(principal),
      passed: passedHeadersOf(request.headers),
    });
    for (const name of PASSED_HEADERS) {
      const value = request.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    if (body !== undefined) headers['content-type'] = request.headers['content-type'] ?? 'application/json';
    // Concatenated, not resolved: an advertised address may carry a path prefix (behind a proxy).
    const target = `${owner.address.replace(/\/+$/, '')}${request.url}`;
    try {
      const response = await send(target, {
        method: request.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      return {
        status: response.status,
        headers: response.headers,
        body: Buffer.from(await response.arrayBuffer()),
      };
    } catch (error) {
      request.log.warn(
        { owner: owner.nodeId, instanceId: owner.instanceId, err: error },
        'forwarding to the owner node failed',
      );
      throw Errors.unavailable(
        `the node that owns instance ${owner.instanceId} (${owner.nodeId}) did not answer: retry (the instance fails over to another node if that node is gone)`,
        2,
      );
    }
  }
  return toOwner;
}
