/** /metrics: the process's Prometheus registry (src/metrics.ts). */
import type { FastifyPluginAsync } from 'fastify';
import type { MetricsRegistry } from '../../metrics.ts';
import { errorResponseSchema } from '../errors.ts';

export interface MetricsRoutesOptions {
  readonly metrics: Pick<MetricsRegistry, 'render' | 'contentType'>;
  /** Serve /metrics without credentials (a scraper on a private network). Default false. */
  readonly publicMetrics?: boolean;
}

export const metricsRoutes: FastifyPluginAsync<MetricsRoutesOptions> = async (app, options) => {
  app.get(
    '/metrics',
    {
      config: { access: options.publicMetrics ? 'anyone' : 'admin' },
      schema: {
        tags: ['events'],
        summary: 'Prometheus metrics (global API key, as `apikey` or `Authorization: Bearer`)',
        response: { 200: { type: 'string' }, 401: errorResponseSchema, 403: errorResponseSchema },
      },
    },
    async (_request, reply) => {
      const body = await options.metrics.render();
      return reply.header('content-type', options.metrics.contentType).send(body);
    },
  );
};
