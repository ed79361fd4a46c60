/**
 * /instance/:id/advanced-settings, /instance/:id/events and /instance/:id/token/rotate: what an instance
 * does, where its events go, and its token. The advanced settings have a shape of their own in the
 * Evolution GO profile, so they are a plugin of their own (the default profile registers them).
 */
import type { FastifyPluginAsync } from 'fastify';
import { Errors } from '../../domain/errors.ts';
import type { InstanceService } from '../../runtime/service.ts';
import { viewOf } from '../auth.ts';
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
}

/** /instance/:id/advanced-settings in zapwire's own shape. */
export const advancedSettingsRoutes: FastifyPluginAsync<InstanceSettingsRoutesOptions> = async (
  app,
  { service },
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
      return viewOf(request.instance).advancedSettings;
    },
  );

  app.route<{ Params: IdParam; Body: AdvancedSettingsBody }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/advanced-settings',
    config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
    schema: {
      tags: ['settings'],
      params: idParam,
      response: { 200: advancedSettingsResponse, ...errorResponses },
      summary: 'Change advanced settings; applies at once, no reconnect',
      body: advancedSettingsSchema,
    },
    handler: async (request) => {
      const { id } = request.instance;
      if (!request.body || Object.keys(request.body).length === 0) {
        throw Errors.validation(
          'send at least one setting: alwaysOnline, rejectCall, msgRejectCall, readMessages, ignoreGroups, ignoreStatus',
        );
      }
      return service.changeAdvancedSettings(id, request.body);
    },
  });
};

/** /instance/:id/events and /instance/:id/token/rotate: the same in every profile. */
export const instanceSettingsRoutes: FastifyPluginAsync<InstanceSettingsRoutesOptions> = async (
  app,
  { service },
) => {
  app.route<{ Params: IdParam; Body: SinkBody }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/events',
    config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
    schema: {
      tags: ['settings'],
      summary:
        'Change where events go and which (webhookUrl, subscribe, rabbitmqEnable, websocketEnable, natsEnable)',
      params: idParam,
      body: sinkBody,
      response: { 200: { type: 'object', additionalProperties: true }, ...errorResponses },
    },
    handler: async (request) => {
      const { id } = request.instance;
      const sinks = parseSinks(request.body ?? {});
      if (Object.keys(sinks).length === 0)
        throw Errors.validation(
          'send at least one of webhookUrl, subscribe, rabbitmqEnable, websocketEnable, natsEnable',
        );
      return service.configureSinks(id, sinks);
    },
  });

  app.post<{ Params: IdParam }>(
    '/instance/:id/token/rotate',
    {
      config: { access: 'caller', instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['instances'],
        summary:
          'Replace the instance token (admin, or the instance itself): the new one is returned once, the old one stops working',
        params: idParam,
        response: {
          200: { type: 'object', properties: { id: { type: 'string' }, token: { type: 'string' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const i = request.instance;
      const { token } = await service.rotateToken(i.id);
      return { id: i.id, token };
    },
  );
};
