/**
 * Composition root: the only module that knows every adapter. `startZapwire` is also what the
 * integration and end-to-end tests start, with their own connector and configuration.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { ConfigError, ensureDataDir, loadConfig, loadOrCreateSecret, type Config } from './config.ts';
import { createLogger, type Logger } from './logger.ts';
import { buildApp } from './http/app.ts';
import { createAuthenticator } from './http/auth.ts';
import websocket from '@fastify/websocket';
import { adminRoutes } from './http/routes/admin.ts';
import { debugRoutes } from './http/routes/debug.ts';
import { instanceRoutes } from './http/routes/instance.ts';
import { instanceHistoryRoutes } from './http/routes/instance-history.ts';
import { instanceSettingsRoutes } from './http/routes/instance-settings.ts';
import { instanceWebhookRoutes } from './http/routes/instance-webhook.ts';
import { managerRoutes } from './http/routes/manager.ts';
import { metricsRoutes } from './http/routes/metrics.ts';
import { sendRoutes } from './http/routes/send.ts';
import { wsRoutes } from './http/routes/ws.ts';
import { BrowserSessions, InspectionLog } from './visualizer/index.ts';
import { generateWebhookSecret, secretsEqual, tokenDigests } from './domain/tokens.ts';
import { INSTANCE_STREAM_PREFIX, instanceStream, whatsappStream } from './domain/events.ts';
import { EmbeddedPostgresError, openEventStore } from './store/index.ts';
import type { EventStore } from './store/port.ts';
import type { SqlDatabase } from './store/sql.ts';
import type { ConnectorDependencies, ConnectorFactory, WhatsAppConnector } from './whatsapp/port.ts';
import { lazyConnector } from './whatsapp/lazy-connector.ts';
import { registerRestoreMetrics } from './runtime/restore/metrics.ts';
import { InstanceRuntime } from './runtime/instance-runtime.ts';
import type { InstanceService } from './runtime/service.ts';
import { InstanceSecrets, SecretBox } from './runtime/secrets.ts';
import { PendingDeletions } from './runtime/pending-deletions.ts';
import { SessionKeyMismatchError, verifySessionKey } from './runtime/key-check.ts';
import { tokenOwnerInLog } from './runtime/token-owner.ts';
import { resealBaileysCreds } from './whatsapp/baileys/reseal.ts';
import { ProjectionRunner } from '../projections/runner.ts';
import { instancesProjection } from '../projections/instances.ts';
import { instanceLogsProjection } from '../projections/instance-logs.ts';
import { clearMessagesReadModel, messagesProjection } from '../projections/messages.ts';
import {
  deletionAudited,
  findInstance,
  instanceIdByTokenHash,
  lastActivityByInstance,
  listInstanceIds,
  sinkSettingsOf,
  tokenHashesOf,
  unfinishedDeletions,
} from '../projections/queries.ts';
import { startSinks, type Sinks } from './sinks/index.ts';
import { defaultProfile } from './http/profiles/default.ts';
import { evolutionGoProfile } from './http/profiles/evolution-go/index.ts';
import type { EdgeProfile } from './http/profiles/profile.ts';
import { MIGRATION_DIRECTORIES } from './migrations.ts';
import { ClusterMember, defaultNodeId } from './cluster/node.ts';
import { registerClusterMetrics } from './cluster/metrics.ts';
import type { AppendFencing } from './store/port.ts';

export type { ConnectorDependencies, ConnectorFactory };

export interface Zapwire {
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly store: EventStore;
  readonly db: SqlDatabase;
  readonly runtime: InstanceRuntime;
  readonly projections: ProjectionRunner;
  /** This node in the cluster (a cluster of one unless CLUSTER_ENABLED): the ClusterView, leases. */
  readonly cluster: ClusterMember;
  readonly globalApiKey: string;
  /** The listening URL once `listen` was asked for. */
  readonly url: string | undefined;
  /**
   * Settles when the process cannot go on and must exit non-zero for its supervisor to restart it: the
   * embedded PostgreSQL exited and could not be started again within EMBEDDED_POSTGRES_RESTARTS.
   */
  readonly failed: Promise<Error>;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** The WhatsApp side; main() passes the Baileys adapter, tests a fake or Baileys on the sandbox. */
  readonly connector: WhatsAppConnector | ConnectorFactory;
  readonly listen?: boolean;
}

export async function startZapwire(options: StartOptions): Promise<Zapwire> {
  const { config, logger } = options;
  const looseDataDir = ensureDataDir(config.dataDir);
  if (looseDataDir) logger.warn(looseDataDir);
  for (const notice of config.retired) logger.warn(notice);
  const key = config.globalApiKey
    ? { value: config.globalApiKey, created: false }
    : loadOrCreateSecret(config.dataDir, 'global-api-key');
  if (key.created) {
    process.stderr.write(
      `\n  zapwire generated the admin API key (stored in ${join(config.dataDir, 'global-api-key')}; shown once):\n\n    GLOBAL_API_KEY=${key.value}\n\n`,
    );
  }
  const secretKey = config.sessionEncryptionKey
    ? config.sessionEncryptionKey
    : Buffer.from(
        loadOrCreateSecret(config.dataDir, 'session-encryption-key', () => randomBytes(32).toString('hex'))
          .value,
        'hex',
      );

  // Appends to an instance's streams carry this node's lease (docs/cluster.md); the cluster member that
  // holds the leases needs the database, so the store reaches it through this late binding.
  const clustered: { member?: ClusterMember } = {};
  const fence: AppendFencing = {
    tokenOf: (stream) => clustered.member?.appendFencing.tokenOf(stream) ?? Promise.resolve(undefined),
    refused: (token) => clustered.member?.appendFencing.refused(token),
  };
  let lost: (error: Error) => void = () => undefined;
  const failed = new Promise<Error>((resolveFailed) => (lost = resolveFailed));
  const { store, db, databaseOutage } = await openEventStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    preparedStatements: config.databasePreparedStatements,
    eventStoreUrl: config.eventStoreUrl,
    // An instance's own streams are never reused (name and token reservations are: soft delete).
    ...(config.kurrentTombstone ? { tombstonePrefixes: [INSTANCE_STREAM_PREFIX, whatsappStream('')] } : {}),
    migrations: MIGRATION_DIRECTORIES,
    notice: (message, level = 'info') => logger[level](message),
    fence,
    embeddedRestarts: config.embeddedPostgresRestarts,
    onDatabaseLost: (reason) => lost(new Error(reason)),
  });
  try {
    const outcome = await verifySessionKey(db, secretKey, {
      previous: config.sessionEncryptionKeyPrevious,
      reseal: [resealBaileysCreds],
    });
    if (outcome === 'rotated')
      logger.warn(
        'SESSION_ENCRYPTION_KEY rotated: secrets and sessions sealed again under the new key; keep SESSION_ENCRYPTION_KEY_PREVIOUS set until every instance has reconnected once, then remove it',
      );
  } catch (error) {
    await store.close().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw error;
  }
  // Several nodes on one store must share it: set TOKEN_PEPPER on each (docs/security.md).
  const tokens = tokenDigests(config.tokenPepper ?? loadOrCreateSecret(config.dataDir, 'token-pepper').value);
  if (!config.messagesProjection) await clearMessagesReadModel(db);
  const projections = new ProjectionRunner(
    store,
    db,
    // The messages read model is opt-in (MESSAGES_PROJECTION): nothing on the API reads it.
    [instancesProjection, instanceLogsProjection, ...(config.messagesProjection ? [messagesProjection] : [])],
    logger,
  );
  await projections.start();
  // Deletes and token rotations not finished yet (a crash cut them short): finished on the owner node.
  const pending = new PendingDeletions(db);
  const cluster = new ClusterMember({
    db,
    logger,
    nodeId: config.cluster.nodeId ?? defaultNodeId(),
    address: config.cluster.advertiseUrl,
    mode: config.cluster.enabled ? 'cluster' : 'single',
    leaseMs: config.cluster.leaseMs,
    heartbeatMs: config.cluster.heartbeatMs,
    movesPerTick: config.restoreConcurrency === 'auto' ? 4 : config.restoreConcurrency,
    // The embedded PostgreSQL serves one process (owner.json): no other node can hold a live lease.
    exclusive: config.databaseUrl === undefined,
    // An instance whose delete is still to finish keeps its lease row: its owner finishes the delete.
    instanceIds: async () => [...(await listInstanceIds(db)), ...(await pending.ids())],
  });
  clustered.member = cluster;
  const secrets = new InstanceSecrets(db, new SecretBox(secretKey));
  const connector =
    typeof options.connector === 'function'
      ? await options.connector({
          config,
          logger,
          db,
          sessionKey: secretKey,
          previousSessionKey: config.sessionEncryptionKeyPrevious,
          proxyPassword: (instanceId) => secrets.get(instanceId, 'proxy_password'),
          sessionFence: cluster.sessionFencing,
        })
      : options.connector;
  const inspection = new InspectionLog();
  // The sinks start after the runtime; a delete finished at start (one a crash cut short) waits for them
  // to drop the instance's delivery log and metrics.
  let sinksStarted: (sinks: Sinks) => void = () => undefined;
  const sinksReady = new Promise<Sinks>((resolve) => (sinksStarted = resolve));
  const runtime = new InstanceRuntime({
    onInstanceDeleted: async (instanceId) => {
      await cluster.forget(instanceId);
      await (await sinksReady).forgetInstance(instanceId);
    },
    pending,
    inspect: inspection.observe,
    store,
    readModel: {
      instanceIds: () => listInstanceIds(db),
      lastActivity: () => lastActivityByInstance(db),
      tokenHashesOf: (instanceId) => tokenHashesOf(db, instanceId),
      deletionAudited: (instanceId) => deletionAudited(db, instanceId),
      unfinishedDeletions: () => unfinishedDeletions(db),
      caughtUp: (position, timeoutMs, names) => projections.waitFor(position, timeoutMs, names),
    },
    connector,
    secrets,
    logger,
    qrMaxCount: config.qrCodeMaxCount,
    reconnect: config.reconnect,
    limits: config.instanceLimits,
    restoreConcurrency: config.restoreConcurrency,
    restoreConcurrencyMax: config.restoreConcurrencyMax,
    tokens,
    allowPrivateWebhooks: config.webhook.allowPrivateNetworks,
    ownership: {
      holds: (instanceId) => cluster.holds(instanceId),
      place: (instanceId) => cluster.place(instanceId),
    },
  });
  await runtime.start();
  // Takes this node's leases and adopts (restores, paced) each instance it now owns.
  await cluster.start(runtime);

  const startedSinks = await startSinks({
    store,
    db,
    config,
    logger,
    instanceLog: (instanceId, level, message, context) =>
      runtime.writeLog(instanceId, level, message, context),
    directory: {
      async get(instanceId) {
        const instance = await findInstance(db, instanceId);
        const webhookSecret = instance ? await secrets.get(instance.id, 'webhook_secret') : undefined;
        if (!instance || webhookSecret === undefined) return undefined;
        return {
          id: instance.id,
          name: instance.name,
          webhookSecret,
          sinks: sinkSettingsOf(instance),
        };
      },
    },
  });
  sinksStarted(startedSinks);
  startedSinks.registerGauge({
    name: 'zapwire_instances',
    help: 'Instances by API state',
    labelNames: ['state'],
    collect: async () => {
      const { rows } = await db.query<{ state: string; count: number }>(
        'SELECT state, count(*)::int AS count FROM rm_instances GROUP BY state',
      );
      return rows.map((r) => ({ labels: { state: r.state }, value: r.count }));
    },
  });
  startedSinks.registerGauge({
    name: 'zapwire_projection_poison_events',
    help: 'Events a projection skipped because it could not apply them (see /health)',
    labelNames: ['projection'],
    collect: async () =>
      [...(await projections.poisonCounts())].map(([projection, value]) => ({
        labels: { projection },
        value,
      })),
  });
  registerClusterMetrics(startedSinks.metricsRegistry, cluster);
  registerRestoreMetrics(startedSinks.metricsRegistry, () => runtime.restoreProgress());
  // The read model, then the log: a token keeps working while `instances` is rebuilt (or lags behind).
  const authenticator = createAuthenticator(
    key.value,
    tokens,
    async (hash) => (await instanceIdByTokenHash(db, hash)) ?? (await tokenOwnerInLog(store, hash)),
  );
  const sessions = new BrowserSessions();

  const app = await buildApp({
    logger,
    store,
    trustProxy: config.trustProxy,
    connectionLimits: config.http,
    forwarding: { cluster, secret: config.cluster.secret },
    profile: edgeProfileOf(config, runtime.commands, db, secrets),
    auth: {
      ...authenticator,
      sessions,
      failedAuth: config.authFailures,
      // The read model first; then the stream itself, so an instance stays reachable by id while its
      // read model is being rebuilt. A stream that ends deleted is an instance whose delete is finishing.
      findInstance: async (idOrName) => {
        const instance = await findInstance(db, idOrName);
        if (instance) return { id: instance.id, name: instance.name };
        const [last] = await store.readStream(instanceStream(idOrName), { direction: 'backward', limit: 1 });
        return last && last.type !== 'InstanceDeleted' ? { id: idOrName, name: idOrName } : undefined;
      },
    },
    cluster: () => cluster.health(),
    restoring: () => runtime.restoreProgress(),
    storeOutage: () => {
      const outage = databaseOutage();
      if (!outage) return undefined;
      const since = outage.since.toISOString();
      return outage.state === 'restarting'
        ? `${outage.summary}; zapwire is restarting it (since ${since})`
        : `${outage.summary}; zapwire gave up restarting it and is exiting (since ${since})`;
    },
    // Anonymous callers read /health: counts only (stream names hold token hashes; errors name tables).
    alerts: async () =>
      [...(await projections.poisonCounts())]
        .filter(([, n]) => n > 0)
        .map(
          ([projection, n]) =>
            `projection ${projection} skipped ${n} event(s) it could not apply; see the server log and GET /admin/dead-letters?subscription=projection:${projection}`,
        ),
    routes: async (server) => {
      // Once, at the root: two registrations would each answer every WebSocket upgrade.
      if (!server.hasDecorator('websocketServer')) {
        await server.register(websocket, { options: { maxPayload: 64 * 1024 } });
      }
      const machineConfig = { qrMaxCount: config.qrCodeMaxCount };
      await server.register(instanceRoutes, { service: runtime.commands, db });
      await server.register(instanceSettingsRoutes, { service: runtime.commands, db });
      await server.register(instanceWebhookRoutes, {
        sinks: startedSinks,
        rotateWebhookSecret: async (instanceId) => {
          runtime.commands.limit(instanceId, 'settings');
          const secret = generateWebhookSecret();
          await secrets.put(instanceId, 'webhook_secret', secret);
          return secret;
        },
      });
      await server.register(instanceHistoryRoutes, { store, machineConfig });
      await server.register(sendRoutes, { service: runtime.commands });
      await server.register(wsRoutes, { sinks: startedSinks });
      await server.register(metricsRoutes, { sinks: startedSinks });
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
        adminApiKey: key.value,
        isAdminKey: async (apikey) => secretsEqual(apikey, key.value),
      });
    },
  });
  let url: string | undefined;
  if (options.listen !== false) {
    url = await app.listen({ port: config.port, host: config.host });
    logger.info(
      { url, store: store.kind, dataDir: config.dataDir },
      `zapwire listening on ${url} (API docs at ${url}/docs)`,
    );
  } else {
    await app.ready();
  }

  let stopped: Promise<void> | undefined;
  return {
    app,
    config,
    store,
    db,
    runtime,
    projections,
    cluster,
    globalApiKey: key.value,
    url,
    failed,
    stop() {
      stopped ??= (async () => {
        // Pairing-code waits answer now, or app.close() would wait up to their timeout for them.
        runtime.beginShutdown();
        await app.close();
        // Hand-over first: every instance's close is recorded and its lease freed for the other nodes.
        await cluster.stop();
        await runtime.stop();
        await startedSinks.stop();
        await projections.stop();
        await store.close();
        // Every store leaves the database to its opener.
        await db.close();
      })();
      return stopped;
    },
  };
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`zapwire: ${error.message}\nSee .env.example for every variable and its form.\n`);
      process.exit(78);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  // Baileys loads when the first instance connects, not before (see lazy-connector.ts).
  let zapwire: Zapwire;
  try {
    zapwire = await startZapwire({
      config,
      logger,
      connector: async (dependencies) =>
        lazyConnector(async () => {
          const { createBaileysConnector } = await import('./whatsapp/baileys/index.ts');
          return createBaileysConnector(dependencies);
        }),
    });
  } catch (error) {
    if (error instanceof SessionKeyMismatchError) {
      process.stderr.write(`zapwire: refusing to start: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
  installProcessPolicy(zapwire, logger);
}

/**
 * Signals and the failure policy of the process (main() installs it; test/integration/security tests it
 * on a child process). One tenant's failure must not stop every tenant: a promise nobody awaited (Baileys
 * rejects some internally) is logged and the process goes on. An uncaught exception may have left any
 * state half written, so the process stops cleanly instead (instances restore on the next start) and
 * exits with 1. SIGTERM and SIGINT stop it cleanly with 0; a stop that hangs is cut after 15 s.
 */
export function installProcessPolicy(
  zapwire: Pick<Zapwire, 'stop'> & Partial<Pick<Zapwire, 'failed'>>,
  logger: Logger,
): void {
  let shuttingDown = false;
  const shutdown = (signal: string, exitCode = 0): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down: finishing requests, closing connections');
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    zapwire.stop().then(
      () => process.exit(exitCode),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection; kept running');
  });
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception; shutting down');
    shutdown('uncaughtException', 1);
  });
  void zapwire.failed?.then((error) => {
    logger.fatal(
      { err: error },
      'the embedded PostgreSQL cannot be restarted; exiting with 1 so that a supervisor restarts zapwire',
    );
    shutdown('database lost', 1);
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    // A failure we can word (the embedded database would not start) gets one line, not a stack.
    const reason =
      error instanceof EmbeddedPostgresError
        ? error.message
        : error instanceof Error
          ? (error.stack ?? error.message)
          : String(error);
    process.stderr.write(`zapwire failed to start: ${reason}\n`);
    process.exit(1);
  });
}

/** The wire format API_COMPAT asks for. Evolution GO's keeps instance tokens sealed to show them to the admin. */
function edgeProfileOf(
  config: Config,
  service: InstanceService,
  db: SqlDatabase,
  secrets: InstanceSecrets,
): EdgeProfile {
  if (config.apiCompat === 'default') return defaultProfile(config.corsOrigins);
  return evolutionGoProfile({
    service,
    db,
    corsOrigins: config.corsOrigins ?? ['*'],
    tokens: {
      put: (instanceId, token) => secrets.put(instanceId, 'instance_token', token),
      get: (instanceId) => secrets.get(instanceId, 'instance_token'),
      all: () => secrets.allOf('instance_token'),
    },
  });
}
