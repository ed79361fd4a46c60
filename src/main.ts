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
import { INSTANCE_OWNED_STREAM_PREFIXES } from './domain/events.ts';
import { OutboxIndex } from './runtime/outbox/outbox-index.ts';
import { openDatabase, openEventLog, outageNotice } from './store/index.ts';
import type { EventStore } from './store/port.ts';
import type { SqlDatabase } from './store/sql.ts';
import { MIGRATION_DIRECTORIES } from './migrations.ts';
import { resolveConnector, type ConnectorFactory, type WhatsAppConnector } from './whatsapp/port.ts';
import { baileysOnFirstUse } from './whatsapp/lazy-connector.ts';
import { resealBaileysCreds } from './whatsapp/baileys/reseal.ts';
import { InstanceRuntime } from './runtime/instance-runtime.ts';
import { InstanceSecrets, SecretBox } from './runtime/secrets.ts';
import { PendingDeletions } from './runtime/pending-deletions.ts';
import { checkSessionKeyAtStart } from './runtime/key-check.ts';
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

export type { ConnectorDependencies, ConnectorFactory } from './whatsapp/port.ts';

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
  /** Settles when the process must exit non-zero for its supervisor: the embedded PostgreSQL is gone for good. */
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
  await checkSessionKeyAtStart(
    db,
    keys.sessionKey,
    { previous: config.sessionEncryptionKeyPrevious, reseal: [resealBaileysCreds] },
    (message) => logger.warn(message),
  );
  const cluster = clusterMemberOf(config, db, logger);
  // Appends to an instance's streams carry this node's lease (docs/cluster.md).
  const { store } = await openEventLog(database, {
    eventStoreUrl: config.eventStoreUrl,
    // An instance's own streams are never reused (name and token reservations are: soft delete).
    tombstonePrefixes: config.kurrentTombstone ? INSTANCE_OWNED_STREAM_PREFIXES : undefined,
    fence: cluster.appendFencing,
  });
  const projections = await startProjections(store, db, logger, config);
  const readModel = new ReadModel(db, store, projections);
  const secrets = new InstanceSecrets(db, new SecretBox(keys.sessionKey));
  const connector = await resolveConnector(options.connector, {
    config,
    logger,
    db,
    sessionKey: keys.sessionKey,
    previousSessionKey: config.sessionEncryptionKeyPrevious,
    proxyPassword: (instanceId) => secrets.get(instanceId, 'proxy_password'),
    sessionFence: cluster.sessionFencing,
  });
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
    // Deletes and token rotations a crash cut short: finished on the owner node.
    pending: new PendingDeletions(db),
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
  runtime.registerMetrics(metrics);
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
