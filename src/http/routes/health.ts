import type { FastifyPluginAsync } from 'fastify';
import type { EventStore } from '../../store/port.ts';

export interface HealthRoutesOptions {
  readonly store: EventStore;
  readonly startedAt: Date;
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, { store, startedAt }) => {
  app.get(
    '/health',
    {
      config: { access: 'anyone' },
      schema: {
        tags: ['health'],
        summary: 'Liveness and store reachability (no API key needed)',
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['ok'] },
              store: { type: 'string' },
              uptimeSeconds: { type: 'number' },
            },
          },
          503: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['unavailable'] },
              store: { type: 'string' },
              error: { type: 'string' },
            },
          },
        },
      },
    },
    async (_request, reply) => {
      try {
        await store.ping();
        return {
          status: 'ok',
          store: store.kind,
          uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
        };
      } catch (error) {
        return reply.status(503).send({
          status: 'unavailable',
          store: store.kind,
          error: error instanceof Error ? error.message : 'unreachable',
        });
      }
    },
  );
};
