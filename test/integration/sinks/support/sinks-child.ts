/**
 * A sinks process for the crash test: opens the store on DATABASE_URL, runs every sink and /ws, prints
 * "ready <port>" and runs until killed. SIGTERM stops it cleanly; SIGKILL is the point of the test.
 */
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import pino from 'pino';
import { installAuth } from '../../../../src/http/auth.ts';
import { wsRoutes } from '../../../../src/http/routes/ws.ts';
import { SINK_MIGRATIONS_DIR, startSinks } from '../../../../src/sinks/index.ts';
import { openEventStore } from '../../../../src/store/index.ts';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`sinks-child: ${name} is required`);
  return value;
};

const config = JSON.parse(env('SINKS_CHILD_CONFIG')) as {
  databaseUrl: string;
  amqpUrl: string;
  amqpExchange: string;
  natsUrl: string;
  natsPrefix: string;
  instances: Array<{ id: string; name: string; webhookSecret: string; sinks: never }>;
};

const logger = pino({ level: process.env['SINK_TEST_LOG'] ?? 'warn' });
const { store, db } = await openEventStore({
  dataDir: '/nonexistent',
  databaseUrl: config.databaseUrl,
  migrations: [SINK_MIGRATIONS_DIR],
});
const sinks = await startSinks({
  store,
  db,
  logger,
  directory: { get: async (id) => config.instances.find((i) => i.id === id) },
  config: {
    amqpUrl: config.amqpUrl,
    amqpExchange: config.amqpExchange,
    natsUrl: config.natsUrl,
    natsSubjectPrefix: config.natsPrefix,
    webhook: { timeoutMs: 2_000, backoffBaseMs: 50, probeMaxMs: 500 },
    // A killed process keeps its leases until they expire: keep them short so the restart takes over soon.
    subscription: { pollIntervalMs: 50, retryDelayMs: 100, leaseMs: 1_500 },
  },
});
const app = Fastify();
installAuth(app, {
  authenticate: async (key) =>
    key === 'admin-key-for-crash-test' ? { principal: { role: 'admin' } } : undefined,
  findInstance: async (ref) => config.instances.find((i) => i.id === ref || i.name === ref),
});
await app.register(websocket);
await app.register(wsRoutes, { sinks });
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.stdout.write(`ready ${typeof address === 'object' && address ? address.port : 0}\n`);

process.on('SIGTERM', () => {
  void (async () => {
    await app.close();
    await sinks.stop();
    await store.close();
    await db.close();
    process.exit(0);
  })();
});
