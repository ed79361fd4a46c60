/**
 * What a route says about itself, in its own `config`, once: who may call it (`access`), whether it must
 * run on the node that owns the instance (`runsOn`), and where its request names that instance
 * (`instanceFrom`). Auth (src/http/auth.ts), the instance resolution and the cluster's forwarding
 * (src/cluster/forwarding.ts) read these facts from the route; no table elsewhere names a route's URL.
 *
 * A route that lacks a fact it needs does not start: the app fails at `register`, naming the route and
 * the fact (`checkRouteFacts`).
 */
import type { RouteOptions } from 'fastify';
import type { BrowserCheck } from './browser-auth.ts';

/**
 * - `anyone`: no key needed (health, sign-in, static assets); a key that is sent is still read.
 * - `caller`: the global API key or an instance token (401 without one).
 * - `admin`: the global API key (401 without a key, 403 for an instance token).
 * - `instance`: an instance token, acting on its own instance (401 without one, and for the admin key).
 * - `{ browser }`: the admin key, or the signed session cookie of the browser pages (manager, visualizer);
 *   `csrf` also asks a cookie for the page token, `sameOrigin` for an Origin of this host.
 */
export type Access = 'anyone' | 'caller' | 'admin' | 'instance' | { readonly browser: BrowserCheck };

/**
 * Where a route's request names the instance it acts on. An instance token always acts on its own
 * instance (a reference to another one is a 403); `token` alone says the route reads no reference.
 */
export type ReferenceSource =
  'params.id' | 'body.instanceName' | 'query.instanceName' | 'query.instance' | 'token';

/**
 * `owner`: the route needs the instance's live actor (its mailbox, its WhatsApp socket, its memory), so
 * in a cluster it runs on the node that holds the instance's lease and other nodes forward it there.
 * `any`: it reads the shared read model or log, or writes what any node may write.
 */
export type RunsOn = 'owner' | 'any';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
    /** Also read the key from `?apikey=` / `?token=` (WebSocket handshakes: browsers cannot set headers). */
    keyInQuery?: boolean;
    /**
     * Where the request names the instance the route acts on: resolved once, before the handler, into
     * `request.instance` (src/http/auth.ts).
     */
    instanceFrom?: readonly ReferenceSource[];
    /**
     * The reference is a filter the admin key may leave out (`/ws?instance=`, dead letters): without one,
     * `request.instanceIfNamed` is undefined instead of a 400.
     */
    instanceOptional?: boolean;
    /** Required on every route but GET/HEAD/OPTIONS (which default to `any`). */
    runsOn?: RunsOn;
  }
}

/** Routes Fastify plugins add on their own (the OpenAPI pages) and that need no key. */
const UNDECLARED_PUBLIC_PREFIXES = ['/docs'];

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

const SOURCES: ReadonlySet<string> = new Set<ReferenceSource>([
  'params.id',
  'body.instanceName',
  'query.instanceName',
  'query.instance',
  'token',
]);

/** Throws, naming the route and the fact, when a route lacks a fact it needs. */
export function checkRouteFacts(route: Pick<RouteOptions, 'method' | 'url' | 'config'>): void {
  const config = route.config ?? {};
  const methods = [route.method].flat().map((method) => String(method).toUpperCase());
  const name = `route ${methods.join(',')} ${route.url}`;
  if (config.access === undefined) {
    if (UNDECLARED_PUBLIC_PREFIXES.some((prefix) => route.url.startsWith(prefix))) return;
    throw new Error(`${name} declares no config.access`);
  }
  if (config.runsOn === undefined && methods.some((method) => !READS.has(method)))
    throw new Error(
      `${name} declares no config.runsOn: say whether it needs the instance's owner node ('owner': it acts through the instance's live actor) or runs on any node ('any')`,
    );
  if (config.runsOn === 'owner' && config.instanceFrom === undefined)
    throw new Error(`${name} runs on the instance's owner node but declares no config.instanceFrom`);
  if (config.access === 'instance' && config.instanceFrom === undefined)
    throw new Error(`${name} takes an instance token only: declare config.instanceFrom ['token']`);
  for (const source of config.instanceFrom ?? [])
    if (!SOURCES.has(source)) throw new Error(`${name}: config.instanceFrom names unknown place "${source}"`);
  if (config.instanceOptional === true && config.instanceFrom === undefined)
    throw new Error(`${name} declares config.instanceOptional without config.instanceFrom`);
}
