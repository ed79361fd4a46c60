/**
 * Composition root: the only module that knows every adapter; it makes each part and hands it the parts
 * it needs, in an order where each exists before anything that uses it. `startZapwire` is also what the
 * integration and end-to-end tests start, with their own connector and configuration.
 */
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { startupWarnings, type Config } from './config.ts';
import type { Logger } from './logger.ts';
import { loadServerKeys } from './server-keys.ts';
import { runProcess } from './process.ts';
import { MetricsRegistry } from './metrics.ts';
import { buildServer, listenOn } from './http/server.ts';
import { InspectionLog } from './visualizer/index.ts';
import { INSTANCE_STREAM_PREFIX, whatsappStream } from './domain/events.ts';
import { OUTBOX_STREAM_PREFIX } from './domain/outbox.ts';
import { OutboxIndex } from './runtime/outbox/outbox-index.ts';
import { registerOutboxMetrics } from './runtime/outbox/metrics.ts';
import { openDatabase, openEventLog, outageNotice } from './store/index.ts';
import type { EventStore } from './store/port.ts';
import type { SqlDatabase } from './store/sql.ts';
import { MIGRATION_DIRECTORIES } from './migrations.ts';
import type { ConnectorDependencies, ConnectorFactory, WhatsAppConnector } from './whatsapp/port.ts';
import { baileysOnFirstUse } from './whatsapp/lazy-connector.ts';
import { resealBaileysCreds } from './whatsapp/baileys/reseal.ts';
import { InstanceRuntime } from './runtime/instance-runtime.ts';
import { InstanceSecrets, SecretBox } from './runtime/secrets.ts';
import { PendingDeletions } from './runtime/pending-deletions.ts';
import { KEY_ROTATED_NOTICE, verifySessionKey } from './runtime/key-check.ts';
import { RuntimeLog } from './runtime/runtime-log.ts';
import { WhatsAppStreams } from './runtime/whatsapp-stream.ts';
import type { ProjectionRunner } from '../projections/runner.ts';
import { startProjections } from '../projections/index.ts';
import { ReadModel } from '../projections/read-model.ts';
import { registerReadModelMetrics } from '../projections/metrics.ts';
import { startSinks } from './sinks/index.ts';
import { InstanceSinkDirectory } from './sinks/directory.ts';
import { clusterMemberOf, type ClusterMember } from './cluster/node.ts';
import { registerClusterMetrics } from './cluster/metrics.ts';
import { startHealth } from './health/wiring.ts';
import { registerRestoreMetrics } from './runtime/restore/metrics.ts';

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
  /** The WhatsApp side: Baileys when run as the process, a fake or Baileys on the sandbox in tests. */
  readonly connector: WhatsAppConnector | ConnectorFactory;
  readonly listen?: boolean;
}

export async function startZapwire(options: StartOptions): Promise<Zapwire> {
  const { config, logger } = options;
  for (const warning of startupWarnings(config)) logger.warn(warning);
  const keys = loadServerKeys(config);
  const database = await openDatabase({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    preparedStatements: config.databasePreparedStatements,
    migrations: MIGRATION_DIRECTORIES,
    notice: (message, level = 'info') => logger[level](message),
    embeddedRestarts: config.embeddedPostgresRestarts,
  });
  const { db } = database;
  const keyCheck = await verifySessionKey(db, keys.sessionKey, {
    previous: config.sessionEncryptionKeyPrevious,
    reseal: [resealBaileysCreds],
  }).catch(async (error: unknown) => {
    await db.close().catch(() => undefined);
    throw error;
  });
  if (keyCheck === 'rotated') logger.warn(KEY_ROTATED_NOTICE);
  // Deletes and token rotations not finished yet (a crash cut them short): finished on the owner node.
  const pending = new PendingDeletions(db);
  const cluster = clusterMemberOf(config, db, logger);
  // Appends to an instance's streams carry this node's lease (docs/cluster.md).
  const { store } = await openEventLog(database, {
    eventStoreUrl: config.eventStoreUrl,
    // An instance's own streams are never reused (name and token reservations are: soft delete).
    tombstonePrefixes: config.kurrentTombstone
      ? [INSTANCE_STREAM_PREFIX, whatsappStream(''), OUTBOX_STREAM_PREFIX]
      : undefined,
    fence: cluster.appendFencing,
  });
  const projections = await startProjections(store, db, logger, config);
  const readModel = new ReadModel(db, store, projections);
  const secrets = new InstanceSecrets(db, new SecretBox(keys.sessionKey));
  const connector =
    typeof options.connector === 'function'
      ? await options.connector({
          config,
          logger,
          db,
          sessionKey: keys.sessionKey,
          previousSessionKey: config.sessionEncryptionKeyPrevious,
          proxyPassword: (instanceId) => secrets.get(instanceId, 'proxy_password'),
          sessionFence: cluster.sessionFencing,
        })
      : options.connector;
  const metrics = new MetricsRegistry();
  // The runtime and the sinks write an instance's `wa-` stream through one writer, which a delete closes.
  const whatsappStreams = new WhatsAppStreams(store);
  const sinkLog = new RuntimeLog(whatsappStreams, logger);
  const sinks = await startSinks({
    store,
    db,
    config,
    logger,
    metrics,
    directory: new InstanceSinkDirectory(readModel, secrets),
    instanceLog: (instanceId, level, message, context) => sinkLog.write(instanceId, level, message, context),
  });
  const inspection = new InspectionLog();
  const runtime = new InstanceRuntime({
    store,
    readModel,
    connector,
    secrets,
    pending,
    whatsappStreams,
    logger,
    config,
    tokens: keys.tokens,
    inspect: inspection.observe,
    onInstanceDeleted: async (instanceId) => {
      await cluster.forget(instanceId);
      await sinks.forgetInstance(instanceId);
    },
    ownership: cluster,
    outboxIndex: new OutboxIndex(db),
  });
  await runtime.start();
  // Takes this node's leases and adopts (restores, paced) each instance it now owns.
  await cluster.start(runtime);
  registerReadModelMetrics(metrics, readModel, projections);
  registerClusterMetrics(metrics, cluster);
  const health = startHealth({ settings: config.health, runtime, sinks, store, metrics, logger });
  registerRestoreMetrics(metrics, () => runtime.restoreProgress());
  registerOutboxMetrics(metrics, runtime.outbox);
  const app = await buildServer({
    config,
    logger,
    keys,
    store,
    db,
    readModel,
    projections,
    runtime,
    secrets,
    sinks,
    cluster,
    metrics,
    inspection,
    health: health.monitor,
    storeOutage: () => outageNotice(database.databaseOutage()),
  });
  const url = await listenOn(app, { config, logger, store }, options.listen !== false);
  let stopped: Promise<void> | undefined;
  return {
    app,
    config,
    store,
    db,
    runtime,
    projections,
    cluster,
    globalApiKey: keys.globalApiKey,
    url,
    failed: database.lost,
    stop() {
      stopped ??= (async () => {
        // Pairing-code waits answer now, or app.close() would wait up to their timeout for them.
        runtime.beginShutdown();
        health.stop();
        await app.close();
        // Hand-over first: every instance's close is recorded and its lease freed for the other nodes.
        await cluster.stop();
        await runtime.stop();
        await sinks.stop();
        await projections.stop();
        await store.close();
        // Every store leaves the database to its opener.
        await db.close();
      })();
      return stopped;
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runProcess((config, logger) => startZapwire({ config, logger, connector: baileysOnFirstUse }));
}
