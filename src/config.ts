/**
 * Typed configuration from the environment. A wrong value stops start-up with a
 * message naming the variable and the expected form; every variable is documented in .env.example.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, chmodSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_HEALTH_SETTINGS, type HealthSettings } from './health/types.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Per-instance limits (0 turns one off). */
export interface InstanceLimits {
  /** Settings writes (advanced settings, sinks, proxy, token and webhook secret rotation) per minute. */
  readonly settingsPerMinute: number;
  /** Connect, disconnect, logout per minute (reconnect has its own RECONNECT_RATE_LIMIT_MS). */
  readonly lifecyclePerMinute: number;
  /** Pairing codes asked for per minute. */
  readonly pairingPerMinute: number;
  /** Texts sent per minute. */
  readonly sendPerMinute: number;
  /** Events an instance's `instance-` stream may gain in any 24 hours before commands are refused. */
  readonly eventsPerDay: number;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  /** Set when the key came from the environment; otherwise read or generated under dataDir. */
  readonly globalApiKey: string | undefined;
  readonly databaseUrl: string | undefined;
  /** DATABASE_PREPARED_STATEMENTS: repeated statements run prepared (off behind a pooler that cannot). */
  readonly databasePreparedStatements: boolean;
  /**
   * EMBEDDED_POSTGRES_RESTARTS: how often, in any ten minutes, the embedded PostgreSQL is started again
   * after it exits on its own before zapwire gives up and exits with 1 (0: exit at the first).
   */
  readonly embeddedPostgresRestarts: number;
  readonly eventStoreUrl: string | undefined;
  /** KURRENTDB_TOMBSTONE: delete a deleted instance's streams with a tombstone (hard delete). */
  readonly kurrentTombstone: boolean;
  readonly amqpUrl: string | undefined;
  readonly amqpExchange: string;
  readonly natsUrl: string | undefined;
  readonly natsSubjectPrefix: string;
  readonly sessionEncryptionKey: Buffer | undefined;
  /** The key being rotated away from: things still sealed under it are opened and sealed again. */
  readonly sessionEncryptionKeyPrevious: Buffer | undefined;
  /** TOKEN_PEPPER: the HMAC key of stored token digests; generated under dataDir when unset. */
  readonly tokenPepper: string | undefined;
  /** TRUST_PROXY: true (any proxy) or a comma-separated list of proxy addresses/CIDRs. */
  readonly trustProxy: boolean | string | undefined;
  readonly waWebSocketUrl: string | undefined;
  readonly waNoiseRootPublicKey: Buffer | undefined;
  readonly qrCodeMaxCount: number;
  readonly reconnect: { readonly baseMs: number; readonly maxMs: number; readonly userRateLimitMs: number };
  /** Per-instance limits on what tenants change (docs/security.md, "Limits per instance"). */
  readonly instanceLimits: InstanceLimits;
  /**
   * RESTORE_CONCURRENCY: instances restored at once after a start; 'auto' (the default) adapts to the
   * event loop's delay and the CPU, up to RESTORE_CONCURRENCY_MAX.
   */
  readonly restoreConcurrency: number | 'auto';
  readonly restoreConcurrencyMax: number;
  /** HEALTH_*: instance health checks and healing (src/health). */
  readonly health: HealthSettings;
  /** The outbox (src/runtime/outbox): how long a send route waits, and the pause after a restriction. */
  readonly outbox: {
    /** SEND_WAIT_MS: a send route answers 202 with the send's id when WhatsApp has not answered by then. */
    readonly waitMs: number;
    /** SEND_RESTRICTION_BACKOFF_MS: the first pause after WhatsApp restricts a number; doubles each time. */
    readonly restrictionBackoffMs: number;
    /** SEND_RESTRICTION_BACKOFF_MAX_MS: the longest pause. */
    readonly restrictionBackoffMaxMs: number;
    /** SEND_MAX_IN_FLIGHT: sends of one instance handed to WhatsApp at once (different recipients). */
    readonly maxInFlight: number;
  };
  /**
   * MESSAGES_PROJECTION: keep rm_messages/rm_labels (every message and label in the read model). No route
   * reads them, so they are off by default: one write per message less on the hot path.
   */
  readonly messagesProjection: boolean;
  readonly webhook: {
    readonly globalUrl: string | undefined;
    /** Signs the global webhook's bodies; unsigned without it. */
    readonly globalSecret: string | undefined;
    readonly timeoutMs: number;
    /** First probe delay after a failed attempt (WEBHOOK_BACKOFF_BASE_MS); doubles per failed probe. */
    readonly backoffBaseMs: number;
    /** Longest delay between probes of a receiver that is down (WEBHOOK_PROBE_MAX_MS). */
    readonly probeMaxMs: number;
    /** An undelivered event older than this is dead-lettered instead of sent (WEBHOOK_MAX_AGE_HOURS), in ms. */
    readonly maxAgeMs: number;
    /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: may instance webhooks reach private/loopback/link-local addresses. */
    readonly allowPrivateNetworks: boolean;
    /** Events per POST (a JSON array) when several wait for one webhook; 1 = one event per request. */
    readonly batchMax: number;
    /** Requests in flight per webhook queue, started in log order; 1 = wait for each answer. */
    readonly pipeline: number;
    /** Dead letters' retention (WEBHOOK_RETENTION_DEAD_HOURS), in ms. */
    readonly deadRetentionMs: number;
    /** WEBHOOK_MAX_DEAD: dead letters kept per instance. */
    readonly maxDead: number;
    readonly redeliverPerMinute: number;
    /** WEBHOOK_CA_FILE: PEM certificates trusted for webhook receivers beside the system's roots. */
    readonly extraCaCertificates: readonly string[] | undefined;
  };
  /** Limits against clients that hold connections (docs/security.md, "Slow clients and connection caps"). */
  readonly http: {
    /** HTTP_REQUEST_TIMEOUT_MS: a request (headers and body) must arrive whole within this. */
    readonly requestTimeoutMs: number;
    /** HTTP_MAX_CONNECTIONS: open connections at once, WebSockets included. */
    readonly maxConnections: number;
    /** HTTP_MAX_CONNECTIONS_PER_ADDRESS: the same per client address (an IPv6 /64 is one address). */
    readonly maxConnectionsPerAddress: number;
  };
  /** Wrong API keys per client address (docs/security.md, "Guessing keys"). */
  readonly authFailures: {
    /** AUTH_FAILURES_BURST: wrong keys an address may send before it gets 429. */
    readonly burst: number;
    /** AUTH_FAILURES_PER_MINUTE: tries an address regains per minute. */
    readonly perMinute: number;
  };
  /** Caps per API key on /ws (docs/events.md "Limits"). */
  readonly websocket: { readonly maxConnectionsPerKey: number; readonly maxReplaysPerKey: number };
  readonly logLevel: LogLevel;
  /** Variables that are set but no longer mean anything, each with what replaced it (logged at start). */
  readonly retired: readonly string[];
  /** The HTTP wire format: zapwire's own, or Evolution GO's (docs/evolution-go.md). */
  readonly apiCompat: 'default' | 'evolution-go';
  /** CORS origins; unset: none in the default profile, `*` in evolution-go. */
  readonly corsOrigins: readonly string[] | undefined;
  /** Cluster mode (docs/cluster.md). */
  readonly cluster: {
    /** CLUSTER_ENABLED: spread instances over every node on the database (needs DATABASE_URL). */
    readonly enabled: boolean;
    /** CLUSTER_NODE_ID; generated per process when unset. */
    readonly nodeId: string | undefined;
    /** CLUSTER_ADVERTISE_URL: how other nodes reach this one; default http://127.0.0.1:<PORT>. */
    readonly advertiseUrl: string;
    /** CLUSTER_LEASE_MS: an instance lease (and a node) expires this long after its last renewal. */
    readonly leaseMs: number;
    /** CLUSTER_HEARTBEAT_MS: how often a node renews its leases and looks for work. */
    readonly heartbeatMs: number;
    /**
     * CLUSTER_SECRET: the same on every node; signs requests a node forwards to an instance's owner
     * (src/cluster/forwarding.ts). Required with CLUSTER_ENABLED; without it a follower cannot forward.
     */
    readonly secret: string | undefined;
  };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  private raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optionalString(name: string): string | undefined {
    return this.raw(name);
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`${name}="${value}": expected a whole number from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  /** A whole number from min to max, or 'auto' (also when unset). */
  intOrAuto(name: string, min: number, max: number): number | 'auto' {
    const value = this.raw(name);
    if (value === undefined || value.toLowerCase() === 'auto') return 'auto';
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`${name}="${value}": expected auto or a whole number from ${min} to ${max}`);
      return 'auto';
    }
    return n;
  }

  url(name: string, protocols: readonly string[]): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    try {
      const url = new URL(value);
      if (!protocols.includes(url.protocol.replace(/:$/, ''))) throw new Error('protocol');
      return value;
    } catch {
      this.problems.push(
        `${name}: expected a URL starting with ${protocols.map((p) => `${p}://`).join(' or ')}`,
      );
      return undefined;
    }
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if ((allowed as readonly string[]).includes(value)) return value as T;
    this.problems.push(`${name}="${value}": expected one of ${allowed.join(', ')}`);
    return fallback;
  }

  flag(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    this.problems.push(`${name}="${value}": expected true or false`);
    return fallback;
  }

  /** A file of PEM certificates, read at start: its certificates, or undefined when unset. */
  pemCertificates(name: string): string[] | undefined {
    const path = this.raw(name);
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      this.problems.push(
        `${name}="${path}": cannot read the file (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      );
      return undefined;
    }
    const certificates = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (certificates.length === 0) {
      this.problems.push(
        `${name}="${path}": expected a file of PEM certificates (-----BEGIN CERTIFICATE-----)`,
      );
      return undefined;
    }
    return certificates;
  }

  /** 32 bytes given as 64 hex characters or base64. */
  key32(name: string): Buffer | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const buf = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
    if (buf.length !== 32) {
      this.problems.push(`${name}: expected 32 bytes as 64 hex characters or base64 (openssl rand -hex 32)`);
      return undefined;
    }
    return buf;
  }

  /** A shared secret of at least 32 characters (an HMAC key). */
  secret32(name: string): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    if (value.length < 32 || /\s/.test(value)) {
      this.problems.push(`${name}: expected at least 32 characters without spaces (openssl rand -hex 32)`);
      return undefined;
    }
    return value;
  }

  apiKey(name: string): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    if (value.length < 16 || /\s/.test(value)) {
      this.problems.push(`${name}: expected at least 16 characters without spaces (openssl rand -hex 24)`);
      return undefined;
    }
    return value;
  }
}

/** Settings of earlier versions, and why they no longer apply. */
const RETIRED: Readonly<Record<string, string>> = {
  WEBHOOK_MAX_ATTEMPTS:
    'a receiver that is down no longer costs events their attempts: its queue pauses and is probed until WEBHOOK_MAX_AGE_HOURS',
  WEBHOOK_BACKOFF_MAX_MS:
    'the longest wait between probes of a receiver that is down is WEBHOOK_PROBE_MAX_MS',
  WEBHOOK_MAX_PENDING:
    'a webhook queue waiting for its receiver keeps a position in the log, not rows: nothing is dropped',
  WEBHOOK_MEMORY_MAX_MB: 'webhook queues hold a page of events each in memory, whatever the backlog',
  WEBHOOK_RETENTION_DELIVERED_HOURS: 'delivered events leave no rows (the log holds them)',
};

function retiredSettings(env: Env): string[] {
  return Object.entries(RETIRED)
    .filter(([name]) => (env[name] ?? '').trim() !== '')
    .map(([name, why]) => `${name} is no longer used: ${why}`);
}

export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const port = r.int('PORT', 8080, 0, 65535);
  const config: Config = {
    port,
    host: r.string('HOST', '127.0.0.1'),
    dataDir: resolve(r.string('DATA_DIR', './data')),
    globalApiKey: r.apiKey('GLOBAL_API_KEY'),
    databaseUrl: r.url('DATABASE_URL', ['postgres', 'postgresql']),
    databasePreparedStatements: r.flag('DATABASE_PREPARED_STATEMENTS', true),
    embeddedPostgresRestarts: r.int('EMBEDDED_POSTGRES_RESTARTS', 5, 0, 100),
    eventStoreUrl: r.url('EVENTSTORE_URL', ['kurrentdb', 'esdb', 'kurrentdb+discover', 'esdb+discover']),
    kurrentTombstone: r.flag('KURRENTDB_TOMBSTONE', false),
    amqpUrl: r.url('AMQP_URL', ['amqp', 'amqps']),
    amqpExchange: r.string('AMQP_EXCHANGE', 'zapwire.events'),
    natsUrl: r.url('NATS_URL', ['nats', 'tls']),
    natsSubjectPrefix: r.string('NATS_SUBJECT_PREFIX', 'zapwire'),
    sessionEncryptionKey: r.key32('SESSION_ENCRYPTION_KEY'),
    sessionEncryptionKeyPrevious: r.key32('SESSION_ENCRYPTION_KEY_PREVIOUS'),
    tokenPepper: r.apiKey('TOKEN_PEPPER'),
    trustProxy: trustProxyOf(r.optionalString('TRUST_PROXY')),
    waWebSocketUrl: r.url('WA_WEBSOCKET_URL', ['ws', 'wss']),
    waNoiseRootPublicKey: r.key32('WA_NOISE_ROOT_PUBLIC_KEY'),
    qrCodeMaxCount: r.int('QRCODE_MAX_COUNT', 5, 1, 50),
    reconnect: {
      baseMs: r.int('RECONNECT_BASE_MS', 2_000, 100, 600_000),
      maxMs: r.int('RECONNECT_MAX_MS', 300_000, 1_000, 3_600_000),
      userRateLimitMs: r.int('RECONNECT_RATE_LIMIT_MS', 60_000, 0, 3_600_000),
    },
    instanceLimits: {
      settingsPerMinute: r.int('RATE_LIMIT_SETTINGS_PER_MINUTE', 30, 0, 1_000_000),
      lifecyclePerMinute: r.int('RATE_LIMIT_LIFECYCLE_PER_MINUTE', 30, 0, 1_000_000),
      pairingPerMinute: r.int('RATE_LIMIT_PAIRING_PER_MINUTE', 5, 0, 1_000_000),
      sendPerMinute: r.int('RATE_LIMIT_SEND_PER_MINUTE', 1_200, 0, 1_000_000),
      eventsPerDay: r.int('INSTANCE_EVENTS_PER_DAY', 5_000, 0, 100_000_000),
    },
    restoreConcurrency: r.intOrAuto('RESTORE_CONCURRENCY', 1, 256),
    restoreConcurrencyMax: r.int('RESTORE_CONCURRENCY_MAX', 32, 1, 1_024),
    health: healthSettingsOf(r),
    outbox: {
      waitMs: r.int('SEND_WAIT_MS', 20_000, 0, 120_000),
      restrictionBackoffMs: r.int('SEND_RESTRICTION_BACKOFF_MS', 300_000, 100, 86_400_000),
      restrictionBackoffMaxMs: r.int('SEND_RESTRICTION_BACKOFF_MAX_MS', 3_600_000, 100, 604_800_000),
      maxInFlight: r.int('SEND_MAX_IN_FLIGHT', 32, 1, 1_024),
    },
    messagesProjection: r.flag('MESSAGES_PROJECTION', false),
    webhook: {
      globalUrl: r.url('WEBHOOK_GLOBAL_URL', ['http', 'https']),
      globalSecret: r.optionalString('WEBHOOK_GLOBAL_SECRET'),
      timeoutMs: r.int('WEBHOOK_TIMEOUT_MS', 10_000, 100, 300_000),
      backoffBaseMs: r.int('WEBHOOK_BACKOFF_BASE_MS', 1_000, 10, 600_000),
      probeMaxMs: r.int('WEBHOOK_PROBE_MAX_MS', 30_000, 100, 3_600_000),
      maxAgeMs: r.int('WEBHOOK_MAX_AGE_HOURS', 72, 1, 8_760) * 3_600_000,
      // On for the single-operator default (a webhook to a local n8n is the common case); the compose
      // file, where tenants hold tokens, turns it off. docs/security.md.
      allowPrivateNetworks: r.flag('WEBHOOK_ALLOW_PRIVATE_NETWORKS', true),
      batchMax: r.int('WEBHOOK_BATCH_MAX', 1, 1, 1_000),
      pipeline: r.int('WEBHOOK_PIPELINE', 8, 1, 64),
      deadRetentionMs: r.int('WEBHOOK_RETENTION_DEAD_HOURS', 720, 1, 87_600) * 3_600_000,
      maxDead: r.int('WEBHOOK_MAX_DEAD', 1_000, 1, 10_000_000),
      redeliverPerMinute: r.int('WEBHOOK_REDELIVER_PER_MINUTE', 30, 1, 100_000),
      extraCaCertificates: r.pemCertificates('WEBHOOK_CA_FILE'),
    },
    http: {
      requestTimeoutMs: r.int('HTTP_REQUEST_TIMEOUT_MS', 30_000, 1_000, 3_600_000),
      maxConnections: r.int('HTTP_MAX_CONNECTIONS', defaultMaxConnections(), 1, 1_000_000),
      maxConnectionsPerAddress: r.int('HTTP_MAX_CONNECTIONS_PER_ADDRESS', 64, 1, 1_000_000),
    },
    authFailures: {
      burst: r.int('AUTH_FAILURES_BURST', 20, 1, 1_000_000),
      perMinute: r.int('AUTH_FAILURES_PER_MINUTE', 10, 1, 1_000_000),
    },
    websocket: {
      maxConnectionsPerKey: r.int('WS_MAX_CONNECTIONS_PER_KEY', 16, 1, 10_000),
      maxReplaysPerKey: r.int('WS_MAX_REPLAYS_PER_KEY', 2, 1, 1_000),
    },
    retired: retiredSettings(env),
    logLevel: r.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    apiCompat: r.oneOf('API_COMPAT', ['default', 'evolution-go'], 'default'),
    corsOrigins: r
      .optionalString('CORS_ORIGINS')
      ?.split(',')
      .map((o) => o.trim())
      .filter(Boolean),
    cluster: {
      enabled: r.flag('CLUSTER_ENABLED', false),
      nodeId: r.optionalString('CLUSTER_NODE_ID'),
      advertiseUrl: (r.url('CLUSTER_ADVERTISE_URL', ['http', 'https']) ?? `http://127.0.0.1:${port}`).replace(
        /\/+$/,
        '',
      ),
      leaseMs: r.int('CLUSTER_LEASE_MS', 10_000, 1_000, 600_000),
      heartbeatMs: r.int('CLUSTER_HEARTBEAT_MS', 2_000, 100, 60_000),
      secret: r.secret32('CLUSTER_SECRET'),
    },
  };
  if (config.cluster.heartbeatMs * 3 > config.cluster.leaseMs) {
    r.problems.push(
      'CLUSTER_HEARTBEAT_MS must be at most a third of CLUSTER_LEASE_MS (a lease is renewed several times before it expires)',
    );
  }
  if (config.cluster.enabled && config.cluster.secret === undefined) {
    r.problems.push(
      'CLUSTER_ENABLED needs CLUSTER_SECRET (the same 32+ characters on every node): nodes forward requests to the node that owns the instance, signed with it',
    );
  }
  if (config.cluster.enabled && config.databaseUrl === undefined) {
    r.problems.push(
      'CLUSTER_ENABLED needs DATABASE_URL: the nodes of a cluster share one PostgreSQL (the embedded one serves a single process)',
    );
  }
  if ((config.waWebSocketUrl === undefined) !== (config.waNoiseRootPublicKey === undefined)) {
    r.problems.push(
      'WA_WEBSOCKET_URL and WA_NOISE_ROOT_PUBLIC_KEY go together: set both (a WhatsApp stand-in such as the sandbox) or neither (real WhatsApp)',
    );
  }
  if (config.reconnect.baseMs > config.reconnect.maxMs) {
    r.problems.push('RECONNECT_BASE_MS must not be larger than RECONNECT_MAX_MS');
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/**
 * Half the process's file-descriptor limit (`ulimit -n`, read from /proc on Linux), at most 10,000: the
 * other half stays for the database pool, the sinks and one WhatsApp socket per instance, so a flood of
 * HTTP connections cannot make them fail with EMFILE. 1024 where the limit cannot be read.
 */
export function defaultMaxConnections(limits?: string): number {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return 1024;
    }
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(text)?.[1];
  if (soft === undefined) return 1024;
  if (soft === 'unlimited') return 10_000;
  return Math.max(64, Math.min(10_000, Math.floor(Number(soft) / 2)));
}

function trustProxyOf(value: string | undefined): boolean | string | undefined {
  if (value === undefined || value === 'false') return undefined;
  return value === 'true' ? true : value;
}

/**
 * A secret kept under DATA_DIR when the environment does not give one: generated on first start
 * (mode 0600) and read back afterwards, so restarts keep it. `created` tells the caller to print it once.
 */
export function loadOrCreateSecret(
  dataDir: string,
  fileName: string,
  generate: () => string = () => randomBytes(24).toString('hex'),
): { value: string; created: boolean } {
  ensureDataDir(dataDir);
  const path = join(dataDir, fileName);
  if (existsSync(path)) return { value: readFileSync(path, 'utf8').trim(), created: false };
  const value = generate();
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return { value, created: true };
}

/** Creates DATA_DIR; what start-up must warn about (a DATA_DIR others can read, retired variables). */
export function startupWarnings(config: Pick<Config, 'dataDir' | 'retired'>): string[] {
  const looseDataDir = ensureDataDir(config.dataDir);
  return [...(looseDataDir ? [looseDataDir] : []), ...config.retired];
}

/**
 * DATA_DIR holds keys, sessions and the embedded database: created 0700. Returns a warning when an
 * existing one lets other users read or write it (the caller logs it; changing a directory the operator
 * made is theirs to decide).
 */
export function ensureDataDir(dataDir: string): string | undefined {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const mode = statSync(dataDir).mode & 0o777;
  if ((mode & 0o066) !== 0) {
    return `DATA_DIR ${dataDir} has mode ${mode.toString(8)}: other users can read or change keys and sessions in it; chmod 700 it`;
  }
  return undefined;
}

function healthSettingsOf(r: {
  int(name: string, fallback: number, min: number, max: number): number;
  flag(name: string, fallback: boolean): boolean;
}): HealthSettings {
  const d = DEFAULT_HEALTH_SETTINGS;
  return {
    ...d,
    enabled: r.flag('HEALTH_ENABLED', d.enabled),
    pingIntervalMs: r.int('HEALTH_PING_INTERVAL_MS', d.pingIntervalMs, 500, 600_000),
    pingTimeoutMs: r.int('HEALTH_PING_TIMEOUT_MS', d.pingTimeoutMs, 200, 120_000),
    probeIntervalMs: r.int('HEALTH_PROBE_INTERVAL_MS', d.probeIntervalMs, 0, 86_400_000),
    probeTimeoutMs: r.int('HEALTH_PROBE_TIMEOUT_MS', d.probeTimeoutMs, 200, 600_000),
    decryptWindowMs: r.int('HEALTH_DECRYPT_WINDOW_MS', d.decryptWindowMs, 1_000, 86_400_000),
    pipelineStuckMs: r.int('HEALTH_PIPELINE_STUCK_MS', d.pipelineStuckMs, 1_000, 3_600_000),
    sinkLagMs: r.int('HEALTH_SINK_LAG_MS', d.sinkLagMs, 1_000, 86_400_000),
    healBudget: r.int('HEALTH_HEAL_BUDGET', d.healBudget, 0, 100),
    healWindowMs: r.int('HEALTH_HEAL_WINDOW_MS', d.healWindowMs, 1_000, 86_400_000),
    sweepMs: r.int('HEALTH_SWEEP_MS', d.sweepMs, 50, 60_000),
  };
}
