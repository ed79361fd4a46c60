/** /send/*: messages out through an instance's WhatsApp connection. */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import type { InstanceService } from '../../runtime/service.ts';
import { errorResponses } from '../schemas.ts';

export interface SendRoutesOptions {
  readonly service: Pick<InstanceService, 'sendText'>;
}

const textBody = {
  type: 'object',
  required: ['number', 'text'],
  properties: {
    instanceName: { type: 'string', maxLength: 128 },
    number: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description: 'phone number with country code (5511999999999) or a JID',
    },
    text: { type: 'string', minLength: 1, maxLength: 65536 },
  },
} as const;

const sentResponse = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    status: { type: 'string' },
    timestamp: { type: 'string' },
    to: { type: 'string' },
  },
} as const;

export const sendRoutes: FastifyPluginAsync<SendRoutesOptions> = async (app, { service }) => {
  app.post<{ Body: FromSchema<typeof textBody> }>(
    '/send/text',
    {
      config: { access: 'caller', instanceFrom: ['body.instanceName'], runsOn: 'owner' },
      schema: {
        tags: ['messages'],
        summary: 'Send a text message (instance token, or the admin key with instanceName)',
        body: textBody,
        response: { 200: sentResponse, ...errorResponses },
      },
    },
    async (request) => {
      const { id } = request.instance;
      return service.sendText(id, request.body.number, request.body.text);
    },
  );
};
