/**
 * The real WhatsApp adapter: the port (src/whatsapp/port.ts) on @whiskeysockets/baileys 7.
 *
 * `createBaileysConnector` is what main() hands to startZapwire. `baileysConnectorFactory(options)`
 * builds the same with test or tuning options (short QR lifetimes, a socket stand-in, cache budget).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import makeWASocket, { type WABrowserDescription } from '@whiskeysockets/baileys';
import { migrate } from '../../store/migrate.ts';
import type {
  ConnectorDependencies,
  ConnectorFactory,
  OpenConnectionOptions,
  WhatsAppConnector,
  WhatsAppSignalListener,
} from '../port.ts';
import { BaileysAuthStore, type AuthStoreOptions } from './auth-store.ts';
import { BaileysConnection, type SocketFactory } from './connection.ts';
import { silenceLibsignalConsole } from './quiet.ts';
import { SocketCaches } from './socket-caches.ts';
import { trustNoiseRoot } from './server.ts';

export const BAILEYS_MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface BaileysConnectorOptions {
  /** Lifetime of every QR (Baileys' `qrTimeout`). Default: Baileys' own, 60 s for the first, 20 s after. */
  readonly qrTimeoutMs?: number;
  /** Baileys' `connectTimeoutMs` (default 20 s). */
  readonly connectTimeoutMs?: number;
  /** How often alwaysOnline re-announces 'available'. Default 4 minutes. */
  readonly alwaysOnlineIntervalMs?: number;
  /** How long a pairing-code request waits for the socket to reach the pairing stage. Default 20 s. */
  readonly pairingCodeWaitMs?: number;
  /** The shared key cache's budget. */
  readonly cache?: AuthStoreOptions;
  /** Baileys' own log level, never more verbose than 'warn'. Default 'warn'. */
  readonly baileysLogLevel?: 'warn' | 'error' | 'silent';
  /** The browser the linked device shows as on the phone. Default: Baileys' (Chrome on macOS). */
  readonly browser?: WABrowserDescription;
  /** Replaces makeWASocket (unit tests). */
  readonly makeSocket?: SocketFactory;
  readonly now?: () => Date;
}

export interface BaileysConnector extends WhatsAppConnector {
  readonly store: BaileysAuthStore;
  /** Connections opened and not yet finished. */
  liveConnections(): number;
  /** Closes every live connection (keeps their sessions). */
  closeAll(): Promise<void>;
}

/** Builds a connector factory with options; `createBaileysConnector` is this with the defaults. */
export function baileysConnectorFactory(options: BaileysConnectorOptions = {}): ConnectorFactory {
  return async (deps) => buildBaileysConnector(deps, options);
}

export const createBaileysConnector: ConnectorFactory = baileysConnectorFactory();

export async function buildBaileysConnector(
  deps: ConnectorDependencies,
  options: BaileysConnectorOptions = {},
): Promise<BaileysConnector> {
  silenceLibsignalConsole();
  const { config, logger } = deps;
  if (trustNoiseRoot(config.waNoiseRootPublicKey)) {
    logger.info(
      'WhatsApp Noise root key replaced (WA_NOISE_ROOT_PUBLIC_KEY): this process talks to that server only',
    );
  }
  if (config.waNoiseRootPublicKey && !config.waWebSocketUrl) {
    logger.warn(
      'WA_NOISE_ROOT_PUBLIC_KEY is set without WA_WEBSOCKET_URL: the real WhatsApp will fail every handshake',
    );
  }
  // main.ts lists the directory too; applying it here keeps the adapter usable on any SqlDatabase.
  await migrate(deps.db, [BAILEYS_MIGRATIONS_DIR]);
  const store = new BaileysAuthStore(deps.db, deps.sessionKey, {
    ...options.cache,
    previousSessionKey: deps.previousSessionKey,
    fence: deps.sessionFence,
  });
  const live = new Set<BaileysConnection>();
  const caches = new SocketCaches();
  const makeSocket = options.makeSocket ?? (makeWASocket as unknown as SocketFactory);
  const now = options.now ?? (() => new Date());

  const connector: BaileysConnector = {
    store,
    open(openOptions: OpenConnectionOptions, listener: WhatsAppSignalListener): BaileysConnection {
      const connection = new BaileysConnection(openOptions, listener, {
        logger,
        store,
        makeSocket,
        proxyPassword: deps.proxyPassword,
        webSocketUrl: config.waWebSocketUrl,
        qrTimeoutMs: options.qrTimeoutMs,
        connectTimeoutMs: options.connectTimeoutMs,
        alwaysOnlineIntervalMs: options.alwaysOnlineIntervalMs ?? 4 * 60_000,
        pairingCodeWaitMs: options.pairingCodeWaitMs ?? 20_000,
        baileysLogLevel: options.baileysLogLevel ?? 'warn',
        browser: options.browser,
        now,
        caches,
        onFinished: (finished) => {
          live.delete(finished);
          // A reconnect may already have opened the next socket of this instance: its entries stay.
          if (![...live].some((other) => other.instanceId === finished.instanceId))
            caches.drop(finished.instanceId);
        },
      });
      live.add(connection);
      return connection;
    },
    removeSession: (instanceId: string) => store.remove(instanceId),
    liveConnections: () => live.size,
    async closeAll() {
      await Promise.all([...live].map((connection) => connection.close()));
    },
  };
  return connector;
}
