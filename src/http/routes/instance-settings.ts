/** /instance/:id/advanced-settings and /instance/:id/events: what an instance does and where its events go. */
import type { FastifyPluginAsync } from 'fastify';
import { Errors } from '../../domain/errors.ts';
import type { InstanceService } from '../../runtime/service.ts';
import type { SqlExecutor } from '../../store/sql.ts';
import { findInstance } from '../../../projections/queries.ts';
import {
  advancedSettingsResponse,
  advancedSettingsSchema,
  errorResponses,
  idParam,
  parseSinks,
  sinkBody,
  type AdvancedSettingsBody,
  type IdParam,
  type SinkBody,
} from '../schemas.ts';

export interface InstanceSettingsRoutesOptions {
  readonly service: InstanceService;
  readonly db: SqlExecutor;
}

export const instanceSettingsRoutes: FastifyPluginAsync<InstanceSettingsRoutesOptions> = async (
  app,
  { service, db },
) => {
  app.get<{ Params: IdParam }>(
    '/instance/:id/advanced-settings',
    {
      config: { access: 'caller', instanceFrom: ['params.id'] },
      schema: {
        tags: ['settings'],
        params: idParam,
        response: { 200: advancedSettingsResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = await request.instance();
      const view = await findInstance(db, id);
      if (!view) throw Errors.instanceNotFound(request.params.id);
      return view.advancedSettings;
    },
  );

  app.route<{ Params: IdParam; Body: AdvancedSettingsBody }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/advanced-settings',
    config: { access: 'caller', instanceFrom: ['params.id'] },
    schema: {
      tags: ['settings'],
      params: idParam,
      response: { 200: advancedSettingsResponse, ...errorResponses },
      summary: 'Change advanced settings; applies at once, no reconnect',
      body: advancedSettingsSchema,
    },
    handler: async (request) => {
      const { id } = await request.instance();
      if (!request.body || Object.keys(request.body).length === 0) {
        throw Errors.validation(
          'send at least one setting: alwaysOnline, rejectCall, msgRejectCall, readMessages, ignoreGroups, ignoreStatus',
        );
      }
      return service.changeAdvancedSettings(id, request.body);
    },
  });

  app.route<{ Params: IdParam; Body: SinkBody }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/events',
    config: { access: 'caller', instanceFrom: ['params.id'] },
    schema: {
      tags: ['settings'],
      summary:
        'Change where events go and which (webhookUrl, subscribe, rabbitmqEnable, websocketEnable, natsEnable)',
      params: idParam,
      body: sinkBody,
      response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses },
    },
    handler: async (request) => {
      const { id } = await request.instance();
      const sinks = parseSinks(request.body ?? {});
      if (Object.keys(sinks).length === 0)
        throw Errors.validation(
          'send at least one of webhookUrl, subscribe, rabbitmqEnable, websocketEnable, natsEnable',
        );
      return service.configureSinks(id, sinks);
    },
  });
};
