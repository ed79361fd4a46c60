/** /metrics: Prometheus metrics of the sinks, the process and the gauges the app registers. */
import type { FastifyPluginAsync } from 'fastify';
import type { Sinks } from '../../sinks/index.ts';
import { errorResponseSchema } from '../errors.ts';

export interface MetricsRoutesOptions {
  readonly sinks: Pick<Sinks, 'metrics'>;
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
      const body = await options.sinks.metrics.render();
      return reply.header('content-type', options.sinks.metrics.contentType).send(body);
    },
  );
};
