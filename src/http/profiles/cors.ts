/**
 * CORS for every response. `*` lets any page call the API with a key it holds (Evolution GO's manager is
 * often served from another origin); a list echoes only the origins named.
 */
import type { FastifyInstance } from 'fastify';

const ALLOWED_HEADERS = 'Origin, Content-Type, Content-Length, Accept, Authorization, apikey';
const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';

export function installCors(app: FastifyInstance, origins: readonly string[]): void {
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
      .header('Access-Control-Allow-Headers', ALLOWED_HEADERS)
      .header('Access-Control-Max-Age', '600');
    // A preflight is answered here, before auth and routing: it carries no key.
    if (request.method === 'OPTIONS') return reply.status(200).send();
    return undefined;
  });
}
