/**
 * CORS for every response. `*` lets any page call the API with a key it holds (Evolution GO's manager is
 * often served from another origin); a list echoes only the origins named.
 */
import type { FastifyInstance } from 'fastify';

/**
 * The request headers a preflight allows: the ones zapwire reads, and what browsers and HTTP libraries
 * add on their own (a fetch with `cache: 'no-cache'`, jQuery's X-Requested-With). A header missing here
 * makes the browser refuse the call before it is sent.
 */
export const ZAPWIRE_CORS_HEADERS = [
  'Origin',
  'Content-Type',
  'Content-Length',
  'Accept',
  'Accept-Encoding',
  'Authorization',
  'Cache-Control',
  'X-Requested-With',
  'apikey',
] as const;
const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';

export function installCors(
  app: FastifyInstance,
  origins: readonly string[],
  allowedHeaders: readonly string[] = ZAPWIRE_CORS_HEADERS,
): void {
  if (origins.length === 0) return;
  const any = origins.includes('*');
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (any) void reply.header('Access-Control-Allow-Origin', '*');
    else if (origin && origins.includes(origin))
      void reply.header('Access-Control-Allow-Origin', origin).header('Vary', 'Origin');
    else if (request.method !== 'OPTIONS') return;
    void reply
      .header('Access-Control-Allow-Methods', ALLOWED_METHODS)
      .header('Access-Control-Allow-Headers', allowedHeaders.join(', '))
      .header('Access-Control-Max-Age', '600');
    // A preflight is answered here, before auth and routing: it carries no key.
    if (request.method === 'OPTIONS') return reply.status(200).send();
    return undefined;
  });
}
