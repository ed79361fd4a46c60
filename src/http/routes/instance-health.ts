/**
 * GET /instance/:id/health: whether an open instance really hears WhatsApp, link by link (transport,
 * delivery, decryption, pipeline, WhatsApp's verdicts), with each link's figure, since when, and why in
 * words. The summary of it also appears in /instance/status, /instance/all and /health (see src/health).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { InstanceHealth } from '../../health/types.ts';
import { errorResponses, idParam, type IdParam } from '../schemas.ts';

export interface InstanceHealthRoutesOptions {
  /** The instance's health given its id (the caller resolved and authorised it). */
  readonly health: (instanceId: string) => Promise<InstanceHealth>;
}

const linkSchema = {
  type: 'object',
  properties: {
    link: { type: 'string', enum: ['transport', 'delivery', 'decryption', 'pipeline', 'verdicts'] },
    state: { type: 'string', enum: ['ok', 'degraded', 'down', 'unknown'] },
    figure: { type: ['number', 'null'] },
    unit: { type: ['string', 'null'], enum: ['ms', 'share', 'events', null] },
    since: { type: 'string' },
    reason: { type: ['string', 'null'] },
  },
} as const;

export const instanceHealthSchema = {
  type: 'object',
  properties: {
    state: { type: 'string', enum: ['healthy', 'degraded', 'down'] },
    since: { type: 'string' },
    reason: { type: ['string', 'null'] },
    needsAttention: { type: 'boolean' },
    links: { type: 'array', items: linkSchema },
    checkedAt: { type: ['string', 'null'] },
  },
} as const;

export const instanceHealthRoutes: FastifyPluginAsync<InstanceHealthRoutesOptions> = async (
  app,
  { health },
) => {
  app.get<{ Params: IdParam }>(
    '/instance/:id/health',
    {
      // The monitor's figures live in the process that holds the instance's connection.
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['instances'],
        summary:
          'Health of the instance: healthy, degraded or down, one entry per link (transport, delivery, decryption, pipeline, verdicts) with its figure, since when and why. An instance that is not open is down',
        params: idParam,
        response: { 200: instanceHealthSchema, ...errorResponses },
      },
    },
    async (request) => health(request.instance.id),
  );
};
