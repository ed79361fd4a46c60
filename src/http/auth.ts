import type { FastifyRequest } from 'fastify';
import { Errors } from '../domain/errors.ts';
import { hashToken, secretsEqual } from '../domain/tokens.ts';

export type Principal =
  { readonly role: 'admin' } | { readonly role: 'instance'; readonly instanceId: string };

export interface Authenticator {
  /** undefined when the key is neither the global key nor a live instance token. */
  authenticate(apikey: string | undefined): Promise<Principal | undefined>;
}

export function createAuthenticator(
  globalApiKey: string,
  instanceIdByTokenHash: (tokenHash: string) => Promise<string | undefined>,
): Authenticator {
  return {
    async authenticate(apikey) {
      if (!apikey) return undefined;
      if (secretsEqual(apikey, globalApiKey)) return { role: 'admin' };
      const instanceId = await instanceIdByTokenHash(hashToken(apikey));
      return instanceId ? { role: 'instance', instanceId } : undefined;
    },
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

export function apikeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers['apikey'];
  const value = Array.isArray(header) ? header[0] : header;
  return value?.trim() || undefined;
}

export function requirePrincipal(request: FastifyRequest): Principal {
  if (!request.principal) throw Errors.unauthorized();
  return request.principal;
}

export function requireAdmin(request: FastifyRequest): void {
  if (requirePrincipal(request).role !== 'admin') throw Errors.adminOnly();
}
