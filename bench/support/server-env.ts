/**
 * The environment a bench gives the server it starts (`node dist/src/main.js`, as `npm start` runs it):
 * what every bench sets, plus its own. Nothing from the bench's own environment leaks in but PATH and HOME
 * and, when `passWebhook` is set, the WEBHOOK_* settings under test.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The node flags of `npm start` (package.json's start script): a bench's server runs with the same heap. */
export const START_NODE_FLAGS: readonly string[] = (() => {
  const packageJson = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
  const { scripts } = JSON.parse(readFileSync(packageJson, 'utf8')) as { scripts: Record<string, string> };
  return (
    /node ((?:--\S+ )*)dist\/src\/main\.js/
      .exec(scripts['start'] ?? '')?.[1]
      ?.trim()
      .split(/\s+/)
      .filter(Boolean) ?? []
  );
})();

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface ServerEnvOptions {
  readonly port: number;
  readonly dataDir: string;
  readonly adminKey: string;
  /** External PostgreSQL; unset: the embedded default. */
  readonly databaseUrl?: string;
  /** Pass the bench's WEBHOOK_* variables through (the sink options under test). */
  readonly passWebhook?: boolean;
  readonly extra?: Readonly<Record<string, string>>;
}

export function serverEnv(options: ServerEnvOptions): NodeJS.ProcessEnv {
  const env = process.env;
  return {
    PATH: env['PATH'],
    HOME: env['HOME'],
    NODE_ENV: 'production',
    PORT: String(options.port),
    HOST: '127.0.0.1',
    DATA_DIR: options.dataDir,
    GLOBAL_API_KEY: options.adminKey,
    LOG_LEVEL: 'warn',
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    ...(options.passWebhook
      ? Object.fromEntries(Object.entries(env).filter(([key]) => key.startsWith('WEBHOOK_')))
      : {}),
    ...options.extra,
  };
}
