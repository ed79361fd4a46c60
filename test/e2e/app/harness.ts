/**
 * End-to-end harness: the whole app (startZapwire with the Baileys connector) listening on 127.0.0.1,
 * driven through HTTP only with the real fetch, against the local WhatsApp sandbox.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { databaseUrlForDataDir, dropDatabaseOfDataDir } from '../../support/postgres.ts';
import { loadConfig } from '../../../src/config.ts';
import { startZapwire, type Zapwire } from '../../../src/main.ts';
import {
  baileysConnectorFactory,
  type BaileysConnectorOptions,
} from '../../../src/whatsapp/baileys/index.ts';

export const ADMIN_KEY = 'e2e-admin-key-0123456789abcdef';

export interface HttpReply<T = Record<string, unknown>> {
  readonly status: number;
  readonly body: T;
  readonly headers: Headers;
}

export interface WhatsAppServerAddress {
  readonly wsUrl: string;
  readonly rootPublicKeyBase64: string;
}

export interface E2eApp {
  readonly url: string;
  readonly dataDir: string;
  /** For assertions that HTTP cannot make (searching every table for a canary). Never used to drive. */
  readonly zapwire: Zapwire;
  request<T = Record<string, unknown>>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options?: { apikey?: string | null; body?: unknown },
  ): Promise<HttpReply<T>>;
  /** Stops the app (SIGTERM-like) and starts a new one on the same data directory. */
  restart(): Promise<E2eApp>;
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export interface E2eAppOptions {
  readonly server: WhatsAppServerAddress;
  readonly dataDir?: string;
  readonly env?: Record<string, string>;
  readonly connector?: BaileysConnectorOptions;
}

export async function startE2eApp(options: E2eAppOptions): Promise<E2eApp> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'zapwire-e2e-'));
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN_KEY,
    DATA_DIR: dataDir,
    // A database of the test run's server per data directory (see test/support/zapwire.ts).
    DATABASE_URL: await databaseUrlForDataDir(dataDir),
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    WA_WEBSOCKET_URL: options.server.wsUrl,
    WA_NOISE_ROOT_PUBLIC_KEY: options.server.rootPublicKeyBase64,
    RECONNECT_BASE_MS: '200',
    RECONNECT_MAX_MS: '2000',
    RECONNECT_RATE_LIMIT_MS: '0',
    ...options.env,
  });
  const zapwire = await startZapwire({
    config,
    logger: pino({ level: 'silent' }),
    connector: baileysConnectorFactory({
      qrTimeoutMs: 4_000,
      connectTimeoutMs: 10_000,
      ...options.connector,
    }),
  });
  const url = zapwire.url;
  if (!url) throw new Error('the app did not listen');
  const app: E2eApp = {
    url,
    dataDir,
    zapwire,
    async request<T>(
      method: 'GET' | 'POST' | 'PUT' | 'DELETE',
      path: string,
      requestOptions: { apikey?: string | null; body?: unknown } = {},
    ): Promise<HttpReply<T>> {
      const headers: Record<string, string> = {};
      const apikey = requestOptions.apikey === undefined ? ADMIN_KEY : requestOptions.apikey;
      if (apikey !== null) headers['apikey'] = apikey;
      let body: string | undefined;
      if (requestOptions.body !== undefined) {
        body = JSON.stringify(requestOptions.body);
        headers['content-type'] = 'application/json';
      }
      const response = await fetch(`${url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, body: parsed as T, headers: response.headers };
    },
    async restart() {
      await zapwire.stop();
      return startE2eApp({ ...options, dataDir });
    },
    async stop({ keepData = false } = {}) {
      await zapwire.stop();
      if (!keepData && !options.dataDir) {
        await dropDatabaseOfDataDir(dataDir);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
  return app;
}

/** Polls until `check` returns a truthy value; fails with the last value seen. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: not within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface InstanceStatus {
  readonly state: string;
  readonly connected: boolean;
  readonly loggedIn: boolean;
  readonly jid: string | null;
  readonly name: string | null;
}

export async function status(app: E2eApp, instanceName: string): Promise<InstanceStatus> {
  const reply = await app.request<InstanceStatus>(
    'GET',
    `/instance/status?instanceName=${encodeURIComponent(instanceName)}`,
  );
  if (reply.status !== 200) throw new Error(`status ${reply.status}: ${JSON.stringify(reply.body)}`);
  return reply.body;
}

export async function waitForState(
  app: E2eApp,
  instanceName: string,
  state: string,
  timeoutMs = 15_000,
): Promise<InstanceStatus> {
  return eventually(
    `${instanceName} reaches ${state}`,
    async () => {
      const s = await status(app, instanceName);
      return s.state === state ? s : undefined;
    },
    timeoutMs,
  );
}

export interface QrReply {
  readonly qrcode: string;
  readonly code: string;
  readonly expiresAt: string;
  readonly count: number;
}

/** The QR, once the instance shows one (GET /instance/qr answers 404 until then). */
export async function waitForQr(
  app: E2eApp,
  instanceName: string,
  notCode?: string,
  timeoutMs = 15_000,
): Promise<QrReply> {
  return eventually(
    `${instanceName} shows a QR`,
    async () => {
      const reply = await app.request<QrReply>(
        'GET',
        `/instance/qr?instanceName=${encodeURIComponent(instanceName)}`,
      );
      if (reply.status !== 200) return undefined;
      return reply.body.code !== notCode ? reply.body : undefined;
    },
    timeoutMs,
  );
}

/** Every text column of every table in the public schema that contains `needle`, as `table.column`. */
export async function findEverywhere(app: E2eApp, needle: string): Promise<string[]> {
  const { db } = app.zapwire;
  const { rows: columns } = await db.query<{ table_name: string; column_name: string; data_type: string }>(
    `SELECT table_name, column_name, data_type FROM information_schema.columns
      WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')`,
  );
  const hits: string[] = [];
  for (const { table_name, column_name, data_type } of columns) {
    const expression =
      data_type === 'bytea'
        ? `position(convert_to($1, 'UTF8') in "${column_name}") > 0`
        : `"${column_name}"::text LIKE '%' || $1 || '%'`;
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${table_name}" WHERE ${expression}`,
      [needle],
    );
    if ((rows[0]?.n ?? 0) > 0) hits.push(`${table_name}.${column_name}`);
  }
  return hits;
}
