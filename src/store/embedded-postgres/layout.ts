/**
 * Where the embedded PostgreSQL keeps what, for a given directory (`<DATA_DIR>/postgres`).
 *
 * The password, the server's log and the rest stay in that directory, private to zapwire. The cluster
 * (PostgreSQL's data directory) is `cluster/` in it, except when zapwire runs as root and the dedicated
 * user PostgreSQL then runs as (run-as.ts) cannot reach it there without opening DATA_DIR to every user:
 * DATA_DIR is 0700, and often under a directory closed to other users (/root). Then the cluster lives in a
 * directory that user owns, `/var/lib/zapwire-pg/<name of DATA_DIR's parent>-<hash of its real path>/`,
 * and `cluster` in zapwire's directory is a symbolic link to it, written once initdb has finished. Later
 * starts, and the tools that open the same DATA_DIR (replay, migrate-from-pglite), follow the link; a
 * DATA_DIR that is moved keeps it.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { EmbeddedPostgresError } from './errors.ts';
import {
  blockingDirectory,
  EMBEDDED_POSTGRES_HOME,
  EMBEDDED_POSTGRES_USER,
  ensurePostgresHome,
  type RunAs,
} from './run-as.ts';

/** Unix socket paths are limited to 107 bytes; `.s.PGSQL.5432` takes 13 of them plus a slash. */
const MAX_SOCKET_DIRECTORY_LENGTH = 90;

export interface Layout {
  /** `<DATA_DIR>/postgres`: the password, the log, and the cluster or the link to it. */
  readonly directory: string;
  /** The PostgreSQL data directory as `postgres -D` is given it (never through the link). */
  readonly cluster: string;
  /** The directory the dedicated user owns that holds the cluster, when it is not in `directory`. */
  readonly outside: string | undefined;
  /** `<directory>/cluster`: the cluster itself, or the link to it when it is outside. */
  readonly clusterLink: string;
  readonly socketDirectory: string;
  readonly passwordFile: string;
  readonly logFile: string;
  /** The zapwire that runs the server: beside the cluster, so two DATA_DIRs sharing one are refused too. */
  readonly ownerFile: string;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The name under EMBEDDED_POSTGRES_HOME for `<DATA_DIR>/postgres`: readable, and fixed by its real path. */
export function outsideDirectoryName(directory: string): string {
  const real = realpathSync(directory);
  const readable =
    basename(dirname(real))
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 32) || 'root';
  return `${readable}-${createHash('sha256').update(real).digest('hex').slice(0, 12)}`;
}

function socketDirectoryIn(home: string): string {
  const socketDirectory = join(home, 'run');
  if (socketDirectory.length <= MAX_SOCKET_DIRECTORY_LENGTH) return socketDirectory;
  // A deep DATA_DIR would overflow the socket path: use a short private directory instead, named after
  // the cluster so that a restart finds the same one.
  const tag = Buffer.from(home).toString('base64url').slice(-24);
  return join(tmpdir(), `zapwire-pg-${tag}`);
}

function layoutWith(directory: string, outside: string | undefined): Layout {
  const home = outside ?? directory;
  return {
    directory,
    cluster: join(home, 'cluster'),
    outside,
    clusterLink: join(directory, 'cluster'),
    socketDirectory: socketDirectoryIn(home),
    passwordFile: join(directory, 'password'),
    logFile: join(directory, 'postgres.log'),
    ownerFile: join(home, 'owner.json'),
  };
}

/**
 * The layout of `directory` (created 0700 when missing). Nothing outside it is created here (prepareLayout
 * does that), so a tool attaching to a running server changes nothing.
 */
export function resolveLayout(directory: string, runAs: RunAs | undefined): Layout {
  const root = resolve(directory);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const link = join(root, 'cluster');
  if (lstatOrUndefined(link)?.isSymbolicLink()) {
    return layoutWith(root, dirname(resolve(root, readlinkSync(link))));
  }
  // zapwire's own directory is its to open (execute only) to the dedicated user; DATA_DIR and the
  // directories above it are the operator's, and stay as they are.
  if (!runAs || !blockingDirectory(root, runAs)) return layoutWith(root, undefined);
  return layoutWith(root, join(EMBEDDED_POSTGRES_HOME, outsideDirectoryName(root)));
}

function ensureDirectory(path: string, mode: number, runAs: RunAs | undefined): void {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
  if (runAs) chownSync(path, runAs.uid, runAs.gid);
}

function hasCluster(path: string): boolean {
  return existsSync(join(path, 'PG_VERSION'));
}

/**
 * Creates the directories of a layout with their modes and owners. With the cluster outside: moves a
 * cluster that an earlier start kept in zapwire's directory (the dedicated user can no longer reach it,
 * e.g. after `chmod 700` of a DATA_DIR an earlier version had opened to 0711), and writes the link when a
 * start was interrupted between initdb and the link. Says where the database is when it is outside.
 */
export function prepareLayout(
  layout: Layout,
  runAs: RunAs | undefined,
  notice: (message: string) => void,
): void {
  const { outside } = layout;
  ensureDirectory(layout.directory, runAs && !outside ? 0o711 : 0o700, undefined);
  if (outside && !existsSync(outside)) {
    if (!runAs) {
      throw new EmbeddedPostgresError(
        `${layout.clusterLink} points to ${layout.cluster}, whose directory is missing: restore it from a backup, or remove the link to start on an empty database`,
      );
    }
    ensurePostgresHome();
    ensureDirectory(outside, 0o700, runAs);
  }
  if (outside && runAs) {
    chownSync(outside, runAs.uid, runAs.gid);
    // For an operator listing /var/lib/zapwire-pg: which DATA_DIR each directory belongs to.
    writeFileSync(join(outside, 'data-dir'), `${dirname(layout.directory)}\n`, { mode: 0o644 });
    const inPlace = lstatOrUndefined(layout.clusterLink);
    if (inPlace?.isDirectory() && hasCluster(layout.clusterLink) && !hasCluster(layout.cluster)) {
      try {
        renameSync(layout.clusterLink, layout.cluster);
      } catch (error) {
        throw new EmbeddedPostgresError(
          `the embedded PostgreSQL's cluster is in ${layout.clusterLink}, which the "${EMBEDDED_POSTGRES_USER}" user cannot reach, and it cannot be moved to ${layout.cluster} (${(error as Error).message.split('\n')[0]}): open the way to it (chmod o+x on DATA_DIR and each directory above it), or move it there yourself and link it (ln -s ${layout.cluster} ${layout.clusterLink})`,
        );
      }
      notice(
        `moved the embedded PostgreSQL's cluster from ${layout.clusterLink} to ${layout.cluster}: the "${EMBEDDED_POSTGRES_USER}" user cannot reach DATA_DIR`,
      );
    }
    if (hasCluster(layout.cluster)) linkCluster(layout);
  }
  if (outside && !hasCluster(layout.cluster) && lstatOrUndefined(layout.clusterLink)?.isSymbolicLink()) {
    throw new EmbeddedPostgresError(
      `${layout.clusterLink} points to ${layout.cluster}, which holds no database: restore it from a backup, or remove the link to start on an empty database`,
    );
  }
  ensureDirectory(layout.socketDirectory, 0o700, runAs);
  if (outside) {
    notice(
      `the embedded PostgreSQL keeps its database in ${outside} (zapwire runs as root and the "${EMBEDDED_POSTGRES_USER}" user cannot enter DATA_DIR); ${layout.clusterLink} links to it`,
    );
  }
}

/** With the cluster outside, makes `<directory>/cluster` the link to it (once initdb has finished). */
export function linkCluster(layout: Layout): void {
  if (!layout.outside || lstatOrUndefined(layout.clusterLink)?.isSymbolicLink()) return;
  const staging = `${layout.clusterLink}.link-${process.pid}`;
  symlinkSync(layout.cluster, staging);
  renameSync(staging, layout.clusterLink);
}

/**
 * Deletes `directory` (a stopped server's) and, when its cluster is outside, the directory holding it:
 * for tests and benchmarks that make throw-away servers.
 */
export function removeEmbeddedPostgres(directory: string): void {
  const root = resolve(directory);
  const link = join(root, 'cluster');
  const outside = new Set<string>();
  if (lstatOrUndefined(link)?.isSymbolicLink()) outside.add(dirname(resolve(root, readlinkSync(link))));
  // A first start interrupted before the link was written.
  if (existsSync(root)) outside.add(join(EMBEDDED_POSTGRES_HOME, outsideDirectoryName(root)));
  for (const path of outside) {
    if (dirname(path) === EMBEDDED_POSTGRES_HOME) rmSync(path, { recursive: true, force: true });
  }
  rmSync(root, { recursive: true, force: true });
}
