/**
 * Who is calling, and on which instance: the one place where a request becomes a principal and an
 * instance reference becomes an instance, with one rule set for 401, 403 and 404.
 *
 * Every route declares `config.access`; `installAuth` checks it in preParsing, before Fastify parses
 * and validates the body, so a missing or wrong key is a 401 whatever the body holds. (Not in onRequest:
 * @fastify/websocket marks upgrade requests in its own onRequest hook, and a refusal thrown before that
 * leaves the upgraded socket open.) A route that forgets to declare its access fails at start-up.
 *
 * - `anyone`: no key needed (health, sign-in, static assets); a key that is sent is still read.
 * - `caller`: the global API key or an instance token (401 without one).
 * - `admin`: the global API key (401 without a key, 403 for an instance token).
 * - `{ browser }`: the admin key, or the signed session cookie of the browser pages (manager, visualizer);
 *   `csrf` also asks a cookie for the page token, `sameOrigin` for an Origin of this host.
 *
 * Keys are read from the `apikey` header, then `Authorization: Bearer`; routes with
 * `config.keyInQuery` (WebSocket handshakes: browsers cannot set headers there) also read `?apikey=` or
 * `?token=`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Errors } from '../domain/errors.ts';
import type { Principal } from '../domain/principal.ts';
import { secretsEqual, type TokenDigests } from '../domain/tokens.ts';
import type { BrowserSessions } from '../visualizer/browser-session.ts';
import { DEFAULT_FAILED_AUTH_LIMITS, FailedAuthThrottle, type FailedAuthLimits } from './auth-throttle.ts';
import { requireBrowserAdmin, type BrowserCheck } from './browser-auth.ts';
import { clientKeyOf } from './client-address.ts';

export type { Principal } from '../domain/principal.ts';

export type Access = 'anyone' | 'caller' | 'admin' | { readonly browser: BrowserCheck };

/** An instance as the edge names it. */
export interface InstanceRef {
  readonly id: string;
  readonly name: string;
}

/** Where a route's request names the instance it acts on. */
export type ReferenceSource = 'params.id' | 'body.instanceName' | 'query.instanceName';

export interface Authenticator {
  /** undefined when the key is neither the global key nor a live instance token. */
  authenticate(apikey: string): Promise<Principal | undefined>;
}

export interface AuthOptions extends Authenticator {
  /** The instance an id or name (case-insensitive) refers to; undefined when there is none. */
  findInstance(idOrName: string): Promise<InstanceRef | undefined>;
  /** The browser sessions, for routes with `{ browser }` access. */
  readonly sessions?: BrowserSessions;
  /** How many wrong keys a client address may send (src/http/auth-throttle.ts). */
  readonly failedAuth?: FailedAuthLimits;
}

/** Wrong keys per client address, for routes that check a key themselves (the manager's sign-in). */
export interface KeyGuesses {
  /** Throws the 429 when the request's address must wait before trying a key. */
  check(request: FastifyRequest): void;
  /** Counts a wrong key from the request's address. */
  failed(request: FastifyRequest): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    readonly keyGuesses: KeyGuesses;
  }
  interface FastifyContextConfig {
    access?: Access;
    /** Also read the key from `?apikey=` / `?token=` (WebSocket handshakes). */
    keyInQuery?: boolean;
    /**
     * Where the request names the instance the route acts on (`request.instance()`); a route that must run
     * on the instance's owner node declares it, or the app does not start (src/cluster/forwarding.ts).
     */
    instanceFrom?: readonly ReferenceSource[];
  }
  interface FastifyRequest {
    principal: Principal | undefined;
    /**
     * The instance this request acts on, named where the route's `config.instanceFrom` says, resolved once
     * per request: the cluster's forwarding decision and the handler get the same answer. An instance
     * token's own instance (a reference to any other one is a 403, existing or not, so a token learns
     * nothing about other instances), or the one the admin key names (400 without a reference, 404 for an
     * unknown one).
     */
    instance(): Promise<InstanceRef>;
    /** The same rule for a reference a route reads itself (an optional one: `/ws?instance=`). */
    instanceOf(reference: string | undefined): Promise<InstanceRef>;
  }
}

export function createAuthenticator(
  globalApiKey: string,
  tokens: TokenDigests,
  instanceIdByTokenHash: (tokenHash: string) => Promise<string | undefined>,
): Authenticator {
  return {
    async authenticate(apikey) {
      if (secretsEqual(apikey, globalApiKey)) return { role: 'admin' };
      for (const digest of tokens.candidates(apikey)) {
        const instanceId = await instanceIdByTokenHash(digest);
        if (instanceId) return { role: 'instance', instanceId };
      }
      return undefined;
    },
  };
}

const first = (value: string | string[] | undefined): string | undefined =>
  (Array.isArray(value) ? value[0] : value)?.trim() || undefined;

/** The key from the `apikey` header, `Authorization: Bearer`, or (when allowed) the query string. */
export function apikeyOf(request: FastifyRequest, fromQuery = false): string | undefined {
  const header = first(request.headers['apikey']);
  if (header) return header;
  const authorization = first(request.headers['authorization']);
  if (authorization?.toLowerCase().startsWith('bearer ')) return authorization.slice(7).trim() || undefined;
  if (!fromQuery) return undefined;
  const query = (request.query ?? {}) as Record<string, unknown>;
  const value = query['apikey'] ?? query['token'];
  return typeof value === 'string' ? value.trim() || undefined : undefined;
}

export function requirePrincipal(request: FastifyRequest): Principal {
  if (!request.principal) throw Errors.unauthorized();
  return request.principal;
}

export function requireAdmin(request: FastifyRequest): void {
  if (requirePrincipal(request).role !== 'admin') throw Errors.adminOnly();
}

/** Routes Fastify plugins add on their own (the OpenAPI pages) and that need no key. */
const UNDECLARED_PUBLIC_PREFIXES = ['/docs'];

export function installAuth(app: FastifyInstance, options: AuthOptions): void {
  app.addHook('onRoute', (route) => {
    const access = route.config?.access;
    if (access === undefined) {
      if (UNDECLARED_PUBLIC_PREFIXES.some((prefix) => route.url.startsWith(prefix))) return;
      throw new Error(`route ${String(route.method)} ${route.url} declares no config.access`);
    }
    if (typeof access === 'object' && !options.sessions) {
      throw new Error(`route ${route.url} needs browser sessions: pass them to installAuth`);
    }
  });

  app.decorateRequest('principal', undefined);
  app.decorateRequest('instanceOf', async function (this: FastifyRequest, reference: string | undefined) {
    return instanceOf(this, reference, options.findInstance);
  });
  const resolved = new WeakMap<FastifyRequest, Promise<InstanceRef>>();
  app.decorateRequest('instance', function (this: FastifyRequest): Promise<InstanceRef> {
    let instance = resolved.get(this);
    if (!instance) {
      const sources = this.routeOptions.config.instanceFrom;
      instance =
        sources === undefined
          ? Promise.reject(new Error(`route ${this.routeOptions.url ?? ''} declares no config.instanceFrom`))
          : (async () => instanceOf(this, referenceOf(this, sources), options.findInstance))();
      resolved.set(this, instance);
    }
    return instance;
  });

  const throttle = new FailedAuthThrottle(options.failedAuth ?? DEFAULT_FAILED_AUTH_LIMITS);
  const keyGuesses: KeyGuesses = {
    check(request) {
      const refusal = throttle.refusal(clientKeyOf(request.ip));
      if (refusal) throw refusal;
    },
    failed: (request) => throttle.failed(clientKeyOf(request.ip)),
  };
  app.decorate('keyGuesses', keyGuesses);

  app.addHook('preParsing', async (request) => {
    const config = request.routeOptions.config;
    const access = config.access ?? 'anyone';
    const key = apikeyOf(request, config.keyInQuery === true);
    request.principal = undefined;
    // A request another cluster node forwarded carries the principal that node authenticated, checked
    // by src/cluster/forwarding.ts before this hook (it never carries the client's key).
    if (request.forwarded) request.principal = request.forwarded.principal;
    else if (key) {
      // Routes anyone may call answer the same with or without a key: a key there is no guess.
      const guarded = access !== 'anyone';
      const refusal = throttle.refusal(clientKeyOf(request.ip));
      if (refusal && guarded) throw refusal;
      if (!refusal) {
        request.principal = await options.authenticate(key);
        if (!request.principal && guarded) keyGuesses.failed(request);
      }
    }
    if (access === 'anyone') return;
    if (access === 'caller') requirePrincipal(request);
    else if (access === 'admin') requireAdmin(request);
    else if (options.sessions) {
      // A signed-in browser acts with the admin key it signed in with.
      if (requireBrowserAdmin(request, options.sessions, access.browser).via === 'cookie')
        request.principal = { role: 'admin' };
    }
  });
}

/**
 * The reference a request gives in the places its route reads: a blank value counts as none, and two
 * places naming different instances are a 400 rather than a guess at which one was meant.
 */
export function referenceOf(
  request: FastifyRequest,
  sources: readonly ReferenceSource[],
): string | undefined {
  const named = new Map<string, string>();
  for (const source of sources) {
    const [part, key] = source.split('.') as ['params' | 'body' | 'query', string];
    const container: unknown = request[part];
    const value =
      container && typeof container === 'object' ? (container as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') throw Errors.validation(`${key}: expected one text value`);
    const trimmed = value.trim();
    if (trimmed) named.set(trimmed.toLowerCase(), trimmed);
  }
  if (named.size > 1)
    throw Errors.validation(
      `instanceName is given twice with different values (${sources.map((s) => s.split('.')[0]).join(' and ')}): name the instance once`,
    );
  return [...named.values()][0];
}

async function instanceOf(
  request: FastifyRequest,
  reference: string | undefined,
  find: (idOrName: string) => Promise<InstanceRef | undefined>,
): Promise<InstanceRef> {
  const principal = requirePrincipal(request);
  const ref = reference?.trim() || undefined;
  if (principal.role === 'instance') {
    const own = await find(principal.instanceId);
    // The token outlived its instance (deleted between the key check and now).
    if (!own) throw Errors.unauthorized();
    if (ref && ref !== own.id && ref.toLowerCase() !== own.name.toLowerCase())
      throw Errors.forbidden(`instance "${ref}"`);
    return own;
  }
  if (!ref) throw Errors.instanceNameRequired();
  const instance = await find(ref);
  if (!instance) throw Errors.instanceNotFound(ref);
  return instance;
}
