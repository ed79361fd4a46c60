/**
 * Who is calling, and on which instance: the one place where a request becomes a principal and an
 * instance reference becomes an instance, with one rule set for 401, 403 and 404.
 *
 * Every route declares `config.access` (src/http/route-facts.ts); `installAuth` checks it in preParsing,
 * before Fastify parses and validates the body, so a missing or wrong key is a 401 whatever the body holds.
 * (Not in onRequest: @fastify/websocket marks upgrade requests in its own onRequest hook, and a refusal
 * thrown before that leaves the upgraded socket open.)
 *
 * Keys are read from the `apikey` header, then `Authorization: Bearer`; routes with
 * `config.keyInQuery` (WebSocket handshakes: browsers cannot set headers there) also read `?apikey=` or
 * `?token=`.
 *
 * The instance a route acts on (`config.instanceFrom`) is resolved once, in a preHandler (after the body
 * is validated), into `request.instance`: the cluster's forwarding decision and the handler read the same
 * answer, and an instance token's instance comes with the token's own lookup (one read for both).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { InstanceView } from '../../projections/queries.ts';
import { Errors } from '../domain/errors.ts';
import type { Principal } from '../domain/principal.ts';
import { secretsEqual, type TokenDigests } from '../domain/tokens.ts';
import type { BrowserSessions } from '../visualizer/browser-session.ts';
import { DEFAULT_FAILED_AUTH_LIMITS, FailedAuthThrottle, type FailedAuthLimits } from './auth-throttle.ts';
import { requireBrowserAdmin } from './browser-auth.ts';
import { clientKeyOf } from './client-address.ts';
import { checkRouteFacts, type ReferenceSource } from './route-facts.ts';

export type { Principal } from '../domain/principal.ts';
export type { Access, ReferenceSource } from './route-facts.ts';

/** An instance as the edge names it. */
export interface InstanceRef {
  readonly id: string;
  readonly name: string;
}

/**
 * An instance a request named, as the lookup found it: its read-model row when the read model has it
 * (undefined while the read model is rebuilt or behind: the instance was found in the log).
 */
export interface ResolvedInstance extends InstanceRef {
  readonly view?: InstanceView;
}

/**
 * The read-model row of a resolved instance. The request found the instance (in the log, if not in the
 * read model): a missing row means the read model is being rebuilt or is behind, not that it is gone.
 */
export function viewOf(instance: ResolvedInstance): InstanceView {
  if (!instance.view)
    throw Errors.unavailable('the read model is catching up (a rebuild?): retry in a moment', 1);
  return instance.view;
}

/** Who a key belongs to: the admin, or an instance token with the instance it was read with. */
export interface Caller {
  readonly principal: Principal;
  /** The token's instance, read with the token (no second lookup). */
  readonly instance?: ResolvedInstance;
}

export interface Authenticator {
  /** undefined when the key is neither the global key nor a live instance token. */
  authenticate(apikey: string): Promise<Caller | undefined>;
}

export interface AuthOptions extends Authenticator {
  /** The instance an id or name (case-insensitive) refers to; undefined when there is none. */
  findInstance(idOrName: string): Promise<ResolvedInstance | undefined>;
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
  interface FastifyRequest {
    principal: Principal | undefined;
    /**
     * The instance this request acts on, named where the route's `config.instanceFrom` says, resolved
     * once before the handler. An instance token's own instance (a reference to any other one is a 403,
     * existing or not, so a token learns nothing about other instances), or the one the admin key names
     * (400 without a reference, 404 for an unknown one). Reading it on a route that declares no
     * `config.instanceFrom` is a programming error (500).
     */
    readonly instance: ResolvedInstance;
    /** The same on a route with `config.instanceOptional`: undefined when the admin key named none. */
    readonly instanceIfNamed: ResolvedInstance | undefined;
  }
}

export function createAuthenticator(
  globalApiKey: string,
  tokens: TokenDigests,
  /** The live instance a token digest belongs to, read in one lookup; undefined when none. */
  instanceByTokenHash: (tokenHash: string) => Promise<ResolvedInstance | undefined>,
): Authenticator {
  return {
    async authenticate(apikey) {
      if (secretsEqual(apikey, globalApiKey)) return { principal: { role: 'admin' } };
      for (const digest of tokens.candidates(apikey)) {
        const instance = await instanceByTokenHash(digest);
        if (instance) return { principal: { role: 'instance', instanceId: instance.id }, instance };
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

export function installAuth(app: FastifyInstance, options: AuthOptions): void {
  app.addHook('onRoute', (route) => {
    checkRouteFacts(route);
    if (typeof route.config?.access === 'object' && !options.sessions)
      throw new Error(`route ${route.url} needs browser sessions: pass them to installAuth`);
  });

  /** The token's instance, read with the token (preParsing), and the instance the request acts on. */
  const callerInstances = new WeakMap<FastifyRequest, ResolvedInstance>();
  const resolved = new WeakMap<FastifyRequest, ResolvedInstance>();
  app.decorateRequest('principal', undefined);
  app.decorateRequest('instance', {
    getter(this: FastifyRequest): ResolvedInstance {
      const instance = resolved.get(this);
      if (instance) return instance;
      throw new Error(
        `route ${this.method} ${this.routeOptions.url ?? ''} reads request.instance but declares no config.instanceFrom`,
      );
    },
  });
  app.decorateRequest('instanceIfNamed', {
    getter(this: FastifyRequest): ResolvedInstance | undefined {
      return resolved.get(this);
    },
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
        const caller = await options.authenticate(key);
        request.principal = caller?.principal;
        if (caller?.instance) callerInstances.set(request, caller.instance);
        if (!caller && guarded) keyGuesses.failed(request);
      }
    }
    if (access === 'anyone') return;
    if (access === 'caller') requirePrincipal(request);
    else if (access === 'admin') requireAdmin(request);
    else if (access === 'instance') {
      // Evolution GO's instance routes: the token names the instance, and the admin key names none.
      if (requirePrincipal(request).role !== 'instance') throw Errors.unauthorized();
    } else if (options.sessions) {
      // A signed-in browser acts with the admin key it signed in with.
      if (requireBrowserAdmin(request, options.sessions, access.browser).via === 'cookie')
        request.principal = { role: 'admin' };
    }
  });

  // After validation (a malformed body is a 400 before any lookup), before the cluster's forwarding
  // decision and the handler, which both read the answer.
  app.addHook('preHandler', async (request) => {
    const config = request.routeOptions.config;
    const sources = config.instanceFrom;
    if (sources === undefined) return;
    const principal = requirePrincipal(request);
    const reference = referenceOf(request, sources);
    if (reference === undefined && principal.role === 'admin' && config.instanceOptional === true) return;
    const own = async (instanceId: string): Promise<ResolvedInstance | undefined> =>
      callerInstances.get(request) ?? (await options.findInstance(instanceId));
    resolved.set(request, await instanceOf(principal, reference, own, options.findInstance));
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
  const places = sources.filter((source) => source !== 'token');
  for (const source of places) {
    const [part, key] = source.split('.') as ['params' | 'body' | 'query', string];
    const container: unknown = request[part];
    const value =
      container && typeof container === 'object' ? (container as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string')
      throw Errors.validation(
        `${key}: give it once, as text (it came ${Array.isArray(value) ? 'repeated' : 'as another type'})`,
      );
    const trimmed = value.trim();
    if (trimmed) named.set(trimmed.toLowerCase(), trimmed);
  }
  if (named.size > 1)
    throw Errors.validation(
      `instanceName is given twice with different values (${places.map((s) => s.split('.')[0]).join(' and ')}): name the instance once`,
    );
  return [...named.values()][0];
}

async function instanceOf(
  principal: Principal,
  reference: string | undefined,
  own: (instanceId: string) => Promise<ResolvedInstance | undefined>,
  find: (idOrName: string) => Promise<ResolvedInstance | undefined>,
): Promise<ResolvedInstance> {
  const ref = reference?.trim() || undefined;
  if (principal.role === 'instance') {
    const instance = await own(principal.instanceId);
    // The token outlived its instance (deleted between the key check and now).
    if (!instance) throw Errors.unauthorized();
    if (ref && ref !== instance.id && ref.toLowerCase() !== instance.name.toLowerCase())
      throw Errors.forbidden(`instance "${ref}"`);
    return instance;
  }
  if (!ref) throw Errors.instanceNameRequired();
  const instance = await find(ref);
  if (!instance) throw Errors.instanceNotFound(ref);
  return instance;
}
