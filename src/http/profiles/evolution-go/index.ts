/**
 * The `API_COMPAT=evolution-go` profile: zapwire's routes answering in Evolution GO's wire format, so its
 * manager, n8n nodes, SDKs and flows keep working after a server swap.
 *
 * One layer at the edge. Routes are matched by method and URL pattern (not by route file); for each, the
 * profile checks Evolution GO's key rule (admin routes take the global key only, instance routes the
 * instance token only), turns Evolution GO's request into zapwire's before the route's handler, and
 * turns the handler's answer into Evolution GO's shape. A few routes whose meaning differs (create with
 * `instanceId`, logs by date, advanced settings as a partial update, send with quotes and mentions) get
 * a handler of the profile's own over the same service.
 */
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RouteOptions,
  preParsingAsyncHookHandler,
} from 'fastify';
import QRCode from 'qrcode';
import {
  findInstance,
  instanceLogs,
  listInstancesPage,
  type InstanceView,
} from '../../../../projections/queries.ts';
import type { InstanceService } from '../../../runtime/service.ts';
import type { SqlExecutor } from '../../../store/sql.ts';
import { sendOptionsOf } from '../../routes/send.ts';
import { installCors } from '../cors.ts';
import { instancePageOf, linkNextPage } from '../../instance-pages.ts';
import type { EdgeProfile } from '../profile.ts';
import { evolutionErrorOf, NOT_AUTHORIZED } from './errors.ts';
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

/** Instance tokens kept sealed so the admin can see them, as in Evolution GO. */
export interface TokenVault {
  put(instanceId: string, token: string): Promise<void>;
  get(instanceId: string): Promise<string | undefined>;
  all(): Promise<ReadonlyMap<string, string>>;
}

export interface EvolutionGoOptions {
  readonly service: InstanceService;
  readonly db: SqlExecutor;
  readonly tokens: TokenVault;
  /** CORS origins; `['*']` unless configured. */
  readonly corsOrigins: readonly string[];
  /** Evolution GO's CLIENT_NAME, shown as `client_name`. */
  readonly clientName?: string;
  readonly now?: () => Date;
}

/** Evolution GO's CORS middleware allows exactly these (its manager sends Cache-Control: no-cache). */
const EVOLUTION_GO_CORS_HEADERS = [
  'Origin',
  'Content-Type',
  'Content-Length',
  'Accept-Encoding',
  'X-CSRF-Token',
  'Authorization',
  'Accept',
  'Cache-Control',
  'X-Requested-With',
  'apikey',
  'ApiKey',
];

type Scope = 'admin' | 'instance';

interface RouteAdapter {
  readonly scope: Scope;
  /** Turns Evolution GO's request into what the route's own handler takes. */
  readonly request?: (request: FastifyRequest) => Promise<void> | void;
  /** Turns the route's answer into Evolution GO's. */
  readonly reply?: (payload: unknown, request: FastifyRequest) => Promise<unknown> | unknown;
  /** Replaces the route's handler where Evolution GO's meaning differs. */
  readonly handle?: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

/** `POST /instance/info/:id` → `POST /instance/info/:` (parameter names vary between route files). */
function routeKey(method: string, url: string): string {
  return `${method} ${url.replace(/:[A-Za-z0-9_]+/g, ':')}`;
}

type Row = Record<string, unknown>;
const bodyOf = (request: FastifyRequest): unknown => request.body;
const paramOf = (request: FastifyRequest): string => {
  const params = request.params as Row;
  const value = Object.values(params)[0];
  return typeof value === 'string' ? value : '';
};

export function evolutionGoProfile(options: EvolutionGoOptions): EdgeProfile {
  const { service, db, tokens } = options;
  const clientName = options.clientName ?? 'zapwire';
  const now = options.now ?? (() => new Date());

  async function qrDataUrl(view: InstanceView): Promise<string | undefined> {
    if (view.state !== 'qr' || !view.qrcode) return undefined;
    return QRCode.toDataURL(view.qrcode.code, { errorCorrectionLevel: 'L', margin: 2, width: 300 });
  }

  async function instanceJson(view: InstanceView, token: string | undefined): Promise<unknown> {
    return toEvolutionInstance(view, token, await qrDataUrl(view), clientName);
  }

  /** An admin route's instance: by id (Evolution GO) or by name (zapwire). */
  async function byReference(reference: string): Promise<InstanceView> {
    const view = reference ? await findInstance(db, reference) : undefined;
    if (!view) throw new EvolutionError(404, 'record not found');
    return view;
  }

  /** The token's own instance. */
  async function own(request: FastifyRequest): Promise<InstanceView> {
    const principal = request.principal;
    if (principal?.role !== 'instance') throw new EvolutionError(401, NOT_AUTHORIZED);
    const view = await findInstance(db, principal.instanceId);
    if (!view) throw new EvolutionError(401, NOT_AUTHORIZED);
    return view;
  }

  /** Evolution GO 0.7's path check on /instance/:instanceId/advanced-settings. */
  async function settingsTarget(request: FastifyRequest): Promise<InstanceView> {
    const id = paramOf(request);
    if (!isUuid(id)) throw new EvolutionError(400, 'invalid instanceId');
    const view = await own(request);
    if (view.id !== id.toLowerCase())
      throw new EvolutionError(403, 'instanceId does not match authenticated instance');
    return view;
  }

  const successOnly = (): unknown => SUCCESS_ONLY;
  const lifecycle: RouteAdapter = {
    scope: 'instance',
    request: (request) => {
      request.body = undefined;
      request.query = {};
    },
    reply: successOnly,
  };
  const settingsPut: RouteAdapter = {
    scope: 'instance',
    handle: async (request) => {
      const view = await settingsTarget(request);
      const patch = advancedSettingsPatch(bodyOf(request));
      const settings =
        Object.keys(patch).length === 0
          ? view.advancedSettings
          : await service.changeAdvancedSettings(view.id, patch);
      return { message: 'Advanced settings updated successfully', settings: advancedSettingsOf(settings) };
    },
  };

  const adapters: Readonly<Record<string, RouteAdapter>> = {
    'POST /instance/create': {
      scope: 'admin',
      handle: async (request) => {
        const input = createRequest(bodyOf(request));
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
        const view = await findInstance(db, instance.id);
        if (!view) throw new EvolutionError(404, 'record not found');
        return success(await instanceJson(view, token));
      },
    },
    'GET /instance/all': {
      scope: 'admin',
      // Paged as in the default profile (src/http/instance-pages.ts); the body keeps Evolution GO's shape.
      handle: async (request, reply) => {
        const { limit, after } = instancePageOf(request.query as Row);
        const page = await listInstancesPage(db, { limit, after });
        linkNextPage(reply, '/instance/all', limit, page.next);
        const known = await Promise.all(page.views.map((view) => tokens.get(view.id)));
        return success(await Promise.all(page.views.map((view, i) => instanceJson(view, known[i]))));
      },
    },
    'GET /instance/info/:': {
      scope: 'admin',
      handle: async (request) => {
        const view = await byReference(paramOf(request));
        return success(await instanceJson(view, await tokens.get(view.id)));
      },
    },
    'DELETE /instance/delete/:': { scope: 'admin', reply: successOnly },
    'POST /instance/connect': {
      scope: 'instance',
      request: async (request) => {
        const connect = connectRequest(bodyOf(request));
        // 0.7: a connect without a subscription keeps the stored one, and gives MESSAGE to an instance
        // that has none yet.
        if (connect.subscribe === undefined && (await own(request)).events.length === 0)
          request.body = { ...connect, subscribe: sinkEventsOf(['MESSAGE']) };
        else request.body = connect;
      },
      reply: async (_payload, request) => success(toEvolutionConnect(await own(request))),
    },
    'GET /instance/qr': {
      scope: 'instance',
      request: (request) => void (request.query = {}),
      reply: (payload) => {
        const qr = payload as { qrcode: string; code: string };
        return success(toEvolutionQr(qr.qrcode, qr.code));
      },
    },
    'POST /instance/pair': {
      scope: 'instance',
      request: (request) => {
        request.body = pairRequest(bodyOf(request));
      },
      reply: (payload) => success(toEvolutionPairingCode((payload as { pairingCode: string }).pairingCode)),
    },
    'GET /instance/status': {
      scope: 'instance',
      request: (request) => void (request.query = {}),
      reply: (payload) =>
        success(toEvolutionStatus(payload as { connected: boolean; loggedIn: boolean; name: string | null })),
    },
    'POST /instance/reconnect': lifecycle,
    'POST /instance/disconnect': lifecycle,
    'POST /instance/logout': lifecycle,
    'DELETE /instance/logout': lifecycle,
    'GET /instance/:/advanced-settings': {
      scope: 'instance',
      handle: async (request) => advancedSettingsOf((await settingsTarget(request)).advancedSettings),
    },
    'PUT /instance/:/advanced-settings': settingsPut,
    'POST /instance/:/advanced-settings': settingsPut,
    'POST /instance/proxy/:': {
      scope: 'admin',
      request: (request) => {
        request.body = proxyOf(bodyOf(request), '');
      },
      reply: (payload) => {
        const { proxy } = payload as { proxy: Parameters<typeof toEvolutionProxy>[0] };
        return success(toEvolutionProxy(proxy));
      },
    },
    'DELETE /instance/proxy/:': { scope: 'admin', reply: successOnly },
    'POST /instance/forcereconnect/:': {
      scope: 'admin',
      request: (request) => {
        request.body = forceReconnectRequest(bodyOf(request));
      },
      reply: successOnly,
    },
    'GET /instance/logs/:': {
      scope: 'admin',
      handle: async (request) => {
        const query = logsRequest(request.query as Row, now());
        const view = await byReference(paramOf(request));
        const entries = await instanceLogs(db, view.id, query);
        return entries.map((entry) => toEvolutionLogEntry(view.id, entry));
      },
    },
    'POST /send/text': {
      scope: 'instance',
      handle: async (request) => {
        const input = sendTextRequest(bodyOf(request));
        const view = await own(request);
        const outcome = await service.sendText(view.id, input.number, input.text, {
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
        const sent =
          outcome.state === 'sent'
            ? outcome.message
            : {
                id: outcome.send.messageId,
                to: outcome.send.to,
                timestamp: outcome.send.requestedAt,
                mentions: undefined,
              };
        return success(
          toEvolutionSentText({
            id: sent.id,
            to: sent.to,
            timestamp: sent.timestamp,
            text: input.text,
            senderJid: view.jid ?? '',
            pushName: view.profileName ?? '',
            mentionedJids: sent.mentions ?? [],
            ...(input.quoted ? { quoted: input.quoted } : {}),
          }),
        );
      },
    },
  };

  function adapt(route: RouteOptions): void {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const matches = new Set(methods.map((method) => adapters[routeKey(String(method), route.url)]));
    // One adapter for every method of the route (PUT and POST of advanced settings), or none.
    if (matches.size !== 1) return;
    const [adapter] = matches;
    if (!adapter) return;
    // The profile reads the raw request itself (Go's decoder rules); the default's schemas would refuse
    // what Evolution GO accepts, and its response schemas would drop Evolution GO's fields.
    if (route.schema) {
      const { body: _body, querystring: _query, response: _response, ...rest } = route.schema;
      route.schema = rest;
    }
    const checkScope: preParsingAsyncHookHandler = async (request) => {
      if (request.principal?.role !== (adapter.scope === 'admin' ? 'admin' : 'instance'))
        throw new EvolutionError(401, NOT_AUTHORIZED);
    };
    route.preParsing = [...asArray(route.preParsing), checkScope];
    if (adapter.request) {
      const normalise = adapter.request;
      route.preValidation = [...asArray(route.preValidation), async (request) => normalise(request)];
    }
    if (adapter.handle) route.handler = adapter.handle;
    if (adapter.reply) {
      const map = adapter.reply;
      route.preSerialization = [
        ...asArray(route.preSerialization),
        async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
          if (reply.statusCode >= 400) return payload;
          if (reply.statusCode !== 200) void reply.status(200);
          return map(payload, request);
        },
      ];
    }
  }

  return {
    name: 'evolution-go',
    install(app: FastifyInstance) {
      installCors(app, options.corsOrigins, EVOLUTION_GO_CORS_HEADERS);
      installJsonLikeGo(app);
      app.setErrorHandler<FastifyError>((error, request, reply) => {
        const answer = evolutionErrorOf(error);
        if (answer.unexpected) request.log.error({ err: error }, 'unhandled error');
        if (answer.retryAfter !== undefined) void reply.header('Retry-After', String(answer.retryAfter));
        // Serialised here: a route this profile does not adapt (zapwire's own, and the HEAD twin of every
        // GET) keeps its response schemas, whose error shape `{error: {code, message}}` this body is not.
        return reply
          .status(answer.statusCode)
          .type('application/json; charset=utf-8')
          .send(JSON.stringify(answer.body));
      });
      app.setNotFoundHandler((_request, reply) => reply.status(404).send({ error: '404 page not found' }));
      app.addHook('onRoute', adapt);
      const anyone = { access: 'anyone' } as Record<string, unknown>;
      // Evolution GO's manager signs in with these two before anything else.
      app.get('/server/ok', { config: anyone }, async () => ({ status: 'ok' }));
      app.get('/license/status', { config: anyone }, async () => ({ status: 'active' }));
    },
    clientErrorBody: (_code, message) => ({ error: message }),
  };
}

function asArray<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/**
 * Go's `ShouldBindJSON` reads the body as JSON whatever the Content-Type (curl's `-d` sends a form type),
 * and an empty body is only an error where a handler needs one.
 */
function installJsonLikeGo(app: FastifyInstance): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, text, done) => {
    const source = String(text);
    if (source.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(source) as unknown);
    } catch (error) {
      const message = error instanceof Error ? error.message : '';
      done(
        new EvolutionError(
          400,
          /end of (JSON )?input|Unterminated|Expected/i.test(message) && !/position 0/.test(message)
            ? 'unexpected EOF'
            : `invalid character '${source.trim()[0] ?? ''}' looking for beginning of value`,
        ),
        undefined,
      );
    }
  });
}
