/**
 * Paging of GET /instance/all, the same in every profile (the body keeps each profile's shape): `limit`
 * instances (default 500, at most 1000) in creation order, after `after=<createdAt>,<id>` of the last
 * instance of the previous page. When more follow, the answer carries `Link: <…>; rel="next"` with the
 * next page's URL.
 */
import type { FastifyReply } from 'fastify';
import { Errors } from '../domain/errors.ts';
import type { InstancePosition } from '../../projections/queries.ts';

export const DEFAULT_INSTANCE_PAGE = 500;
export const MAX_INSTANCE_PAGE = 1000;

/** The query string's schema (the default profile validates with it). */
export const instancePageQuery = {
  type: 'object',
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_INSTANCE_PAGE },
    after: { type: 'string', minLength: 1, maxLength: 200 },
  },
  additionalProperties: false,
} as const;

const AFTER = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z),(.+)$/;

/** The page a query asks for; a 400 naming the parameter when it does not fit. */
export function instancePageOf(query: Record<string, unknown>): {
  limit: number;
  after: InstancePosition | undefined;
} {
  const rawLimit = query['limit'];
  const limit = rawLimit === undefined || rawLimit === '' ? DEFAULT_INSTANCE_PAGE : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_INSTANCE_PAGE)
    throw Errors.validation(`limit: expected a whole number from 1 to ${MAX_INSTANCE_PAGE}`);
  const rawAfter = query['after'];
  if (rawAfter === undefined || rawAfter === '') return { limit, after: undefined };
  const match = typeof rawAfter === 'string' ? AFTER.exec(rawAfter) : null;
  if (!match || Number.isNaN(Date.parse(match[1]!)))
    throw Errors.validation(
      'after: expected <createdAt>,<id> of the last instance of the previous page (the Link header of the previous answer has it)',
    );
  return { limit, after: { createdAt: match[1]!, id: match[2]! } };
}

/** Sets `Link: <path?limit=…&after=…>; rel="next"` when a next page exists. */
export function linkNextPage(
  reply: FastifyReply,
  path: string,
  limit: number,
  next: InstancePosition | undefined,
): void {
  if (!next) return;
  const after = encodeURIComponent(`${next.createdAt},${next.id}`);
  void reply.header('link', `<${path}?limit=${limit}&after=${after}>; rel="next"`);
}
