/**
 * The HTTP edge, composed: the app (src/http/app.ts) with the wire profile API_COMPAT asks for, auth, and
 * every route group, each handed the parts it needs. main.ts makes the parts and calls this.
 */
import type { FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { MetricsRegistry } from '../metrics.ts';
import type { ServerKeys } from '../server-keys.ts';
import { generateWebhookSecret, secretsEqual } from '../domain/tokens.ts';
import type { EventStore } from '../store/port.ts';
import type { SqlDatabase } from '../store/sql.ts';
import type { InstanceRuntime } from '../runtime/instance-runtime.ts';
import type { InstanceSecrets } from '../runtime/secrets.ts';
import type { Sinks } from '../sinks/index.ts';
import type { ClusterMember } from '../cluster/node.ts';
import { BrowserSessions, type InspectionLog } from '../visualizer/index.ts';
import type { ProjectionRunner } from '../../projections/runner.ts';
import type { ReadModel } from '../../projections/read-model.ts';
import { projectionAlerts } from '../../projections/health.ts';
import { buildApp } from './app.ts';
import { createAuthenticator } from './auth.ts';
import { defaultProfile } from './profiles/default.ts';
import { evolutionGoProfile } from './profiles/evolution-go/index.ts';
import type { EdgeProfile } from './profiles/profile.ts';
import { adminRoutes } from './routes/admin.ts';
import { debugRoutes } from './routes/debug.ts';
import { sendsRoutes } from './routes/sends.ts';
import { instanceHistoryRoutes } from './routes/instance-history.ts';
import { instanceSettingsRoutes } from './routes/instance-settings.ts';
import { instanceWebhookRoutes } from './routes/instance-webhook.ts';
import { managerRoutes } from './routes/manager.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { wsRoutes } from './routes/ws.ts';
import { instanceHealthRoutes } from './routes/instance-health.ts';
import type { HealthMonitor } from '../health/monitor.ts';

export interface ServerParts {
  readonly config: Config;
  readonly logger: Logger;
  readonly keys: ServerKeys;
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly readModel: ReadModel;
  readonly projections: ProjectionRunner;
  readonly runtime: InstanceRuntime;
  readonly secrets: InstanceSecrets;
  readonly sinks: Sinks;
  readonly cluster: ClusterMember;
  readonly metrics: MetricsRegistry;
  readonly inspection: InspectionLog;
  /** Instance health (src/health): GET /instance/:id/health, the summaries, /health's counts. */
  readonly health: HealthMonitor;
  /** Why the store is not answering, when zapwire knows (its embedded PostgreSQL); shown by /health. */
  readonly storeOutage: () => string | undefined;
}

export function buildServer(parts: ServerParts): Promise<FastifyInstance> {
  const { config, keys, store, db, readModel, projections, runtime, secrets, sinks, cluster, inspection } =
    parts;
  const sessions = new BrowserSessions();
  const machineConfig = { qrMaxCount: config.qrCodeMaxCount };
  return buildApp({
    logger: parts.logger,
    store,
    trustProxy: config.trustProxy,
    connectionLimits: config.http,
    forwarding: { cluster, secret: config.cluster.secret },
    profile: edgeProfileOf(parts),
    auth: {
      // The read model first, then the log: a token keeps working while `instances` is rebuilt.
      ...createAuthenticator(keys.globalApiKey, keys.tokens, (hash) => readModel.instanceByTokenHash(hash)),
      findInstance: (idOrName) => readModel.findInstance(idOrName),
      sessions,
      failedAuth: config.authFailures,
    },
    cluster: () => cluster.health(),
    instanceHealth: () => parts.health.counts(),
    restoring: () => runtime.restoreProgress(),
    storeOutage: parts.storeOutage,
    alerts: () => projectionAlerts(projections),
    routes: async (server) => {
      // Once, at the root: two registrations would each answer every WebSocket upgrade.
      if (!server.hasDecorator('websocketServer')) {
        await server.register(websocket, { options: { maxPayload: 64 * 1024 } });
      }
      await server.register(instanceSettingsRoutes, { service: runtime.commands });
      await server.register(instanceWebhookRoutes, {
        sinks,
        rotateWebhookSecret: async (instanceId) => {
          runtime.commands.limit(instanceId, 'settings');
          const secret = generateWebhookSecret();
          await secrets.put(instanceId, 'webhook_secret', secret);
          return secret;
        },
      });
      await server.register(instanceHistoryRoutes, { store, machineConfig });
      await server.register(instanceHealthRoutes, {
        health: async (id) => parts.health.health(id, await apiStateOf(parts, id)),
      });
      await server.register(sendsRoutes, { sends: runtime.commands.sends });
      await server.register(wsRoutes, { sinks });
      await server.register(metricsRoutes, { metrics: parts.metrics });
      await server.register(adminRoutes, { db, projections, cluster, deadLetters: store });
      await server.register(debugRoutes, {
        store,
        inspection,
        machineConfig,
        liveSnapshot: (id) => runtime.liveSnapshot(id),
      });
      await server.register(managerRoutes, {
        sessions,
        inspection,
        adminApiKey: keys.globalApiKey,
        isAdminKey: async (apikey) => secretsEqual(apikey, keys.globalApiKey),
      });
    },
  });
}

/** The instance's state for its health: the live actor's here, else the read model's. */
async function apiStateOf({ runtime, readModel }: ServerParts, id: string): Promise<string> {
  return runtime.apiStateOf(id) ?? (await readModel.instanceView(id))?.state ?? 'created';
}

/** The wire format API_COMPAT asks for. Evolution GO's keeps instance tokens sealed to show them to the admin. */
function edgeProfileOf({ config, runtime, db, secrets, health }: ServerParts): EdgeProfile {
  if (config.apiCompat === 'default')
    return defaultProfile(config.corsOrigins, {
      service: runtime.commands,
      db,
      health: (id, state) => health.health(id, runtime.apiStateOf(id) ?? state),
    });
  return evolutionGoProfile({
    service: runtime.commands,
    db,
    corsOrigins: config.corsOrigins ?? ['*'],
    tokens: {
      put: (instanceId, token) => secrets.put(instanceId, 'instance_token', token),
      get: (instanceId) => secrets.get(instanceId, 'instance_token'),
      all: () => secrets.allOf('instance_token'),
    },
  });
}

/** Listens on HOST:PORT and says where (the URL), or only readies the app for inject (tests: `listen` false). */
export async function listenOn(
  app: FastifyInstance,
  { config, logger, store }: Pick<ServerParts, 'config' | 'logger' | 'store'>,
  listen: boolean,
): Promise<string | undefined> {
  if (!listen) {
    await app.ready();
    return undefined;
  }
  const url = await app.listen({ port: config.port, host: config.host });
  logger.info(
    { url, store: store.kind, dataDir: config.dataDir },
    `zapwire listening on ${url} (API docs at ${url}/docs)`,
  );
  return url;
}
