/**
 * Starts the whole app in-process (real store, projections, runtime, HTTP) with the fake WhatsApp
 * connector, and talks to it through Fastify's inject (no socket). Restartable on the same data.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { startZapwire, type Zapwire } from '../../src/main.ts';
import type { WhatsAppEvent } from '../../src/domain/events.ts';
import {
  FakeWhatsAppConnector,
  type FakeConnection,
  type FakeConnectorOptions,
} from '../../src/whatsapp/fake.ts';
import { databaseUrlForDataDir, dropDatabaseOfDataDir } from './postgres.ts';

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export interface Reply<T = Record<string, unknown>> {
  readonly status: number;
  readonly body: T;
  readonly headers: Record<string, string | string[] | number | undefined>;
}

export interface TestApp {
  readonly zapwire: Zapwire;
  readonly fake: FakeWhatsAppConnector;
  readonly dataDir: string;
  request<T = Record<string, unknown>>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    url: string,
    options?: {
      apikey?: string | null;
      body?: unknown;
      rawBody?: string;
      contentType?: string;
      headers?: Record<string, string>;
    },
  ): Promise<Reply<T>>;
  /** Stops the app (like SIGTERM) and starts a new one on the same data, with a new fake phone side. */
  restart(options?: { fake?: FakeWhatsAppConnector; kill?: boolean }): Promise<TestApp>;
  stop(): Promise<void>;
}

export interface TestAppOptions {
  readonly dataDir?: string;
  readonly fake?: FakeWhatsAppConnector;
  readonly fakeOptions?: FakeConnectorOptions;
  readonly env?: Record<string, string>;
  /** The app's logger (default: silent); the route fuzzer passes one that records every line. */
  readonly logger?: pino.Logger;
}

export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'zapwire-test-'));
  const fake = options.fake ?? new FakeWhatsAppConnector(options.fakeOptions);
  const config = loadConfig({
    GLOBAL_API_KEY: ADMIN_KEY,
    DATA_DIR: dataDir,
    // A database of the test run's server per data directory (starting a PostgreSQL per app would cost
    // seconds); the embedded default itself is tested in test/contract and test/integration/startup.
    DATABASE_URL: await databaseUrlForDataDir(dataDir),
    LOG_LEVEL: 'silent',
    RECONNECT_BASE_MS: '100',
    RECONNECT_MAX_MS: '1000',
    // Every injected request comes from 127.0.0.1, and many tests send wrong keys on purpose: the
    // throttling of wrong keys is tested where it is set low (test/integration/security/key-guessing.test.ts).
    AUTH_FAILURES_BURST: '100000',
    ...options.env,
  });
  const zapwire = await startZapwire({
    config,
    logger: options.logger ?? pino({ level: 'silent' }),
    connector: fake,
    listen: false,
  });
  const app: TestApp = {
    zapwire,
    fake,
    dataDir,
    async request(method, url, requestOptions = {}) {
      const headers: Record<string, string> = { ...requestOptions.headers };
      const apikey = requestOptions.apikey === undefined ? ADMIN_KEY : requestOptions.apikey;
      if (apikey !== null) headers['apikey'] = apikey;
      let payload: string | undefined;
      if (requestOptions.rawBody !== undefined) {
        payload = requestOptions.rawBody;
        headers['content-type'] = requestOptions.contentType ?? 'application/json';
      } else if (requestOptions.body !== undefined) {
        payload = JSON.stringify(requestOptions.body);
        headers['content-type'] = 'application/json';
      }
      const response = await zapwire.app.inject({
        method,
        url,
        headers,
        ...(payload === undefined ? {} : { payload }),
      });
      let body: unknown = response.body;
      try {
        body = response.json();
      } catch {
        // not JSON: keep the text
      }
      return { status: response.statusCode, body: body as never, headers: response.headers };
    },
    async restart(restartOptions = {}) {
      await zapwire.stop();
      return startTestApp({
        ...options,
        dataDir,
        fake: restartOptions.fake ?? new FakeWhatsAppConnector(options.fakeOptions),
      });
    },
    async stop() {
      await zapwire.stop();
      if (!options.dataDir) {
        await dropDatabaseOfDataDir(dataDir);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
  return app;
}

/** Polls until `check` returns a truthy value (bounded); returns it. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Signs a browser in to the manager (POST /manager/session): its cookie and CSRF page token. */
export async function signInManager(
  app: FastifyInstance,
  apikey: string = ADMIN_KEY,
): Promise<{ status: number; cookie: string; csrf: string; setCookie: string }> {
  const r = await app.inject({
    method: 'POST',
    url: '/manager/session',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ apikey }),
  });
  const body = r.statusCode === 200 ? (r.json() as { csrf?: string }) : {};
  const setCookie = String(r.headers['set-cookie'] ?? '');
  return { status: r.statusCode, cookie: setCookie.split(';')[0] ?? '', csrf: body.csrf ?? '', setCookie };
}

/**
 * Links a created instance through the fake WhatsApp: connects it, scans its QR as `account`, and waits
 * until it is open. Resolves with its live connection.
 */
export async function pairFake(
  t: TestApp,
  instance: { readonly id: string; readonly token: string },
  account: { readonly jid: string; readonly pushName: string },
): Promise<FakeConnection> {
  await t.request('POST', '/instance/connect', { apikey: instance.token });
  const connection = await eventually(() => t.fake.connection(instance.id));
  connection.issueQr();
  connection.scan(account);
  await eventually(async () => {
    const status = await t.request('GET', '/instance/status', { apikey: instance.token });
    return status.body['state'] === 'open';
  });
  return connection;
}

/** A text from a customer's phone (5511999999999), as the fake WhatsApp delivers it. */
export function customerText(messageId: string, text: string): WhatsAppEvent {
  const now = new Date().toISOString();
  return {
    type: 'MessageReceived',
    data: {
      at: now,
      messageId,
      chatJid: '5511999999999@s.whatsapp.net',
      senderJid: '5511999999999@s.whatsapp.net',
      fromMe: false,
      pushName: 'Cliente',
      messageType: 'conversation',
      text,
      timestamp: now,
      isGroup: false,
    },
  };
}
