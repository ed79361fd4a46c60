/**
 * Evolution GO's routes (API_COMPAT=evolution-go), registered instead of zapwire's instance, advanced
 * settings and send routes: the same URLs, Evolution GO's request and answer shapes, over the same
 * service. Each route declares its facts like every other route (src/http/route-facts.ts): admin routes
 * take the global key only, instance routes the instance token only (`access: 'instance'`: the token names
 * the instance, the admin key is a 401), and the commands run on the instance's owner node.
 *
 * Bodies and queries are read the way Evolution GO's Go handlers read them (requests.ts) in each route's
 * preValidation, so a malformed request is a 400 before the instance is looked up, as in Evolution GO.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import QRCode from 'qrcode';
import {
  findInstance,
  instanceLogs,
  listInstancesPage,
  type InstanceView,
} from '../../../../projections/queries.ts';
import type { InstanceService } from '../../../runtime/service.ts';
import type { SqlExecutor } from '../../../store/sql.ts';
import { viewOf } from '../../auth.ts';
import { instancePageOf, linkNextPage } from '../../instance-pages.ts';
import { currentQr, pairingPhone } from '../../qr-and-pairing.ts';
import { idParam, parseSinks, type IdParam } from '../../schemas.ts';
import { sinkEventsOf } from './event-names.ts';
import {
  advancedSettingsPatch,
  connectRequest,
  createRequest,
  EvolutionError,
  forceReconnectRequest,
  isUuid,
  logsRequest,
  pairRequest,
  proxyOf,
  sendTextRequest,
  type ConnectRequest,
  type LogsRequest,
  type ProxyRequest,
  type SendTextRequest,
} from './requests.ts';
import {
  advancedSettingsOf,
  success,
  SUCCESS_ONLY,
  toEvolutionConnect,
  toEvolutionInstance,
  toEvolutionLogEntry,
  toEvolutionPairingCode,
  toEvolutionProxy,
  toEvolutionQr,
  toEvolutionSentText,
  toEvolutionStatus,
} from './wire.ts';
import { sendOptionsOf } from '../../routes/send.ts';

/** Instance tokens kept sealed so the admin can see them, as in Evolution GO. */
export interface TokenVault {
  put(instanceId: string, token: string): Promise<void>;
  get(instanceId: string): Promise<string | undefined>;
  all(): Promise<ReadonlyMap<string, string>>;
}

export interface EvolutionGoRoutesOptions {
  readonly service: InstanceService;
  /** The read model: instance pages, logs, and the row a command leaves behind. */
  readonly db: SqlExecutor;
  readonly tokens: TokenVault;
  /** Evolution GO's CLIENT_NAME, shown as `client_name`. */
  readonly clientName?: string;
  readonly now?: () => Date;
}

const admin = { access: 'admin' } as const;
const ownToken = { access: 'instance', instanceFrom: ['token'] } as const;
const tags = ['evolution-go'];

/** Reads the body as Evolution GO's handler does, before validation: a malformed one is a 400 before any lookup. */
const goBody =
  <T>(read: (body: unknown) => T) =>
  async (request: FastifyRequest): Promise<void> => {
    request.body = read(request.body);
  };

export const evolutionGoRoutes: FastifyPluginAsync<EvolutionGoRoutesOptions> = async (app, options) => {
  const { service, db, tokens } = options;
  const clientName = options.clientName ?? 'zapwire';
  const now = options.now ?? (() => new Date());

  async function instanceJson(view: InstanceView, token: string | undefined): Promise<unknown> {
    const qr =
      view.state === 'qr' && view.qrcode
        ? await QRCode.toDataURL(view.qrcode.code, { errorCorrectionLevel: 'L', margin: 2, width: 300 })
        : undefined;
    return toEvolutionInstance(view, token, qr, clientName);
  }

  /** The read-model row after a command changed it (the answer shows what the command left). */
  async function rowAfter(instanceId: string): Promise<InstanceView> {
    const view = await findInstance(db, instanceId);
    if (!view) throw new EvolutionError(404, 'record not found');
    return view;
  }

  // Evolution GO's manager signs in with these two before anything else.
  app.get('/server/ok', { config: { access: 'anyone' } }, async () => ({ status: 'ok' }));
  app.get('/license/status', { config: { access: 'anyone' } }, async () => ({ status: 'active' }));

  app.post<{ Body: unknown }>(
    '/instance/create',
    { config: { ...admin, runsOn: 'any' }, schema: { tags, summary: 'Create an instance (admin)' } },
    async (request) => {
      const input = createRequest(request.body);
      if (input.instanceId && (await findInstance(db, input.instanceId)))
        throw new EvolutionError(409, 'instance already exists');
      const { instance, token } = await service.create({
        ...(input.instanceId ? { id: input.instanceId } : {}),
        name: input.name,
        token: input.token,
        // Evolution GO stores no subscription (`events: ""`) until the first connect gives one.
        sinks: { events: [] },
        ...(input.proxy ? { proxy: input.proxy } : {}),
        ...(input.advancedSettings ? { advancedSettings: input.advancedSettings } : {}),
      });
      await tokens.put(instance.id, token);
      return success(await instanceJson(await rowAfter(instance.id), token));
    },
  );

  app.get(
    '/instance/all',
    { config: admin, schema: { tags, summary: 'Every instance, with its token (admin)' } },
    // Paged as in the default profile (src/http/instance-pages.ts); the body keeps Evolution GO's shape.
    async (request, reply) => {
      const { limit, after } = instancePageOf(request.query as Record<string, unknown>);
      const page = await listInstancesPage(db, { limit, after });
      linkNextPage(reply, '/instance/all', limit, page.next);
      const known = await Promise.all(page.views.map((view) => tokens.get(view.id)));
      return success(await Promise.all(page.views.map((view, i) => instanceJson(view, known[i]))));
    },
  );

  app.get<{ Params: IdParam }>(
    '/instance/info/:id',
    {
      config: { ...admin, instanceFrom: ['params.id'] },
      schema: { tags, summary: 'One instance by id or name (admin)', params: idParam },
    },
    async (request) => {
      const view = viewOf(request.instance);
      return success(await instanceJson(view, await tokens.get(view.id)));
    },
  );

  app.delete<{ Params: IdParam }>(
    '/instance/delete/:id',
    {
      config: { ...admin, instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: { tags, summary: 'Delete an instance (admin)', params: idParam },
    },
    async (request) => {
      await service.delete(request.instance.id, 'admin');
      return SUCCESS_ONLY;
    },
  );

  app.post<{ Body: ConnectRequest }>(
    '/instance/connect',
    {
      config: { ...ownToken, runsOn: 'owner' },
      schema: { tags, summary: 'Start connecting; the QR code follows at GET /instance/qr' },
      preValidation: goBody(connectRequest),
    },
    async (request) => {
      const { id, view } = request.instance;
      const connect = request.body;
      // 0.7: a connect without a subscription keeps the stored one, and gives MESSAGE to an instance
      // that has none yet.
      const sinks = parseSinks({
        ...connect,
        ...(connect.subscribe === undefined && (view?.events.length ?? 0) === 0
          ? { subscribe: sinkEventsOf(['MESSAGE']) }
          : {}),
      });
      await service.connect(id, Object.keys(sinks).length > 0 ? sinks : undefined);
      return success(toEvolutionConnect(await rowAfter(id)));
    },
  );

  app.get(
    '/instance/qr',
    { config: ownToken, schema: { tags, summary: 'The QR code to scan' } },
    async (request) => {
      const qr = await currentQr(viewOf(request.instance));
      return success(toEvolutionQr(qr.qrcode, qr.code));
    },
  );

  app.post<{ Body: { phone: string } }>(
    '/instance/pair',
    {
      config: { ...ownToken, runsOn: 'owner' },
      schema: { tags, summary: 'A pairing code to type on the phone' },
      preValidation: goBody(pairRequest),
    },
    async (request) => {
      const { pairingCode } = await service.requestPairingCode(
        request.instance.id,
        pairingPhone(request.body.phone),
      );
      return success(toEvolutionPairingCode(pairingCode));
    },
  );

  app.get(
    '/instance/status',
    { config: ownToken, schema: { tags, summary: 'Connection state' } },
    async (request) => {
      const view = viewOf(request.instance);
      return success(
        toEvolutionStatus({ connected: view.connected, loggedIn: view.loggedIn, name: view.profileName }),
      );
    },
  );

  const lifecycle = (
    method: 'POST' | 'DELETE',
    url: string,
    summary: string,
    run: (instanceId: string) => Promise<unknown>,
  ): void => {
    app.route({
      method,
      url,
      config: { ...ownToken, runsOn: 'owner' },
      schema: { tags, summary },
      handler: async (request) => {
        await run(request.instance.id);
        return SUCCESS_ONLY;
      },
    });
  };
  lifecycle('POST', '/instance/reconnect', 'Reconnect with the saved session', (id) => service.reconnect(id));
  lifecycle('POST', '/instance/disconnect', 'Close the connection, keep the session', (id) =>
    service.disconnect(id),
  );
  lifecycle('POST', '/instance/logout', 'Remove the WhatsApp session', (id) => service.logout(id));
  lifecycle('DELETE', '/instance/logout', 'Remove the WhatsApp session', (id) => service.logout(id));

  /** Evolution GO 0.7's path check on /instance/:id/advanced-settings: the token's own instance, by UUID. */
  const settingsTarget = (request: { params: IdParam; instance: { id: string } }): string => {
    const { id } = request.params;
    if (!isUuid(id)) throw new EvolutionError(400, 'invalid instanceId');
    if (request.instance.id !== id.toLowerCase())
      throw new EvolutionError(403, 'instanceId does not match authenticated instance');
    return request.instance.id;
  };

  app.get<{ Params: IdParam }>(
    '/instance/:id/advanced-settings',
    { config: ownToken, schema: { tags, summary: 'Advanced settings', params: idParam } },
    async (request) => {
      settingsTarget(request);
      return advancedSettingsOf(viewOf(request.instance).advancedSettings);
    },
  );

  app.route<{ Params: IdParam; Body: unknown }>({
    method: ['PUT', 'POST'],
    url: '/instance/:id/advanced-settings',
    config: { ...ownToken, runsOn: 'owner' },
    schema: { tags, summary: 'Change advanced settings (omitted fields keep theirs)', params: idParam },
    handler: async (request) => {
      const id = settingsTarget(request);
      const patch = advancedSettingsPatch(request.body);
      const settings =
        Object.keys(patch).length === 0
          ? viewOf(request.instance).advancedSettings
          : await service.changeAdvancedSettings(id, patch);
      return { message: 'Advanced settings updated successfully', settings: advancedSettingsOf(settings) };
    },
  });

  app.post<{ Params: IdParam; Body: ProxyRequest }>(
    '/instance/proxy/:id',
    {
      config: { ...admin, instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: { tags, summary: 'Set the proxy (admin)', params: idParam },
      preValidation: goBody((body) => proxyOf(body, '')),
    },
    async (request) =>
      success(toEvolutionProxy(await service.configureProxy(request.instance.id, request.body))),
  );

  app.delete<{ Params: IdParam }>(
    '/instance/proxy/:id',
    {
      config: { ...admin, instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: { tags, summary: 'Remove the proxy (admin)', params: idParam },
    },
    async (request) => {
      await service.removeProxy(request.instance.id);
      return SUCCESS_ONLY;
    },
  );

  app.post<{ Params: IdParam; Body: { number: string } }>(
    '/instance/forcereconnect/:id',
    {
      config: { ...admin, instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: { tags, summary: 'Drop the connection and connect again (admin)', params: idParam },
      preValidation: goBody(forceReconnectRequest),
    },
    async (request) => {
      await service.disconnect(request.instance.id);
      await service.connect(request.instance.id);
      return SUCCESS_ONLY;
    },
  );

  app.get<{ Params: IdParam; Querystring: LogsRequest }>(
    '/instance/logs/:id',
    {
      config: { ...admin, instanceFrom: ['params.id'] },
      schema: { tags, summary: 'Instance log by whole UTC days (admin)', params: idParam },
      preValidation: async (request) => {
        request.query = logsRequest(request.query as unknown as Record<string, unknown>, now());
      },
    },
    async (request) => {
      const { id } = request.instance;
      const entries = await instanceLogs(db, id, request.query);
      return entries.map((entry) => toEvolutionLogEntry(id, entry));
    },
  );

  app.post<{ Body: SendTextRequest }>(
    '/send/text',
    {
      config: { ...ownToken, runsOn: 'owner' },
      schema: { tags, summary: 'Send a text message' },
      preValidation: goBody(sendTextRequest),
    },
    async (request) => {
      const input = request.body;
      const { id, view } = request.instance;
      const outcome = await service.sendText(id, input.number, input.text, {
        delayMs: input.delayMs,
        mentions: input.mentionedJid,
        mentionAll: input.mentionAll,
        ...(input.id ? { messageId: input.id } : {}),
        ...(input.quoted ? { quoted: input.quoted } : {}),
        // Harmless to Evolution GO's clients, which never send it: a retry answers with the first send.
        ...sendOptionsOf(request),
      });
      // Evolution GO answers a send with the message: one still on its way (paced, paused) is answered
      // with the id it will go out with and the time it was asked for.
      const sent: { id: string; to: string; timestamp: string; mentions?: readonly string[] } =
        outcome.state === 'sent'
          ? outcome.message
          : { id: outcome.send.messageId, to: outcome.send.to, timestamp: outcome.send.requestedAt };
      return success(
        toEvolutionSentText({
          id: sent.id,
          to: sent.to,
          timestamp: sent.timestamp,
          text: input.text,
          senderJid: view?.jid ?? '',
          pushName: view?.profileName ?? '',
          mentionedJids: sent.mentions ?? [],
          ...(input.quoted ? { quoted: input.quoted } : {}),
        }),
      );
    },
  );
};
