/**
 * Process identity for crash recovery. A pid alone is not an identity: after a crash and a reboot (or in a
 * container) the same number can belong to another process. On Linux the start time in /proc/<pid>/stat
 * tells them apart; elsewhere we fall back to "a process with that pid exists".
 */
import { readFileSync } from 'node:fs';

export interface ProcessIdentity {
  readonly pid: number;
  /** Clock ticks after boot at which the process started (Linux), or null where unknown. */
  readonly startTime: string | null;
}

export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user (e.g. the postgres user when we are not root).
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

export function identityOf(pid: number): ProcessIdentity {
  return { pid, startTime: startTimeOf(pid) };
}

export function isAlive(identity: ProcessIdentity): boolean {
  if (!processExists(identity.pid)) return false;
  if (identity.startTime === null) return true;
  const now = startTimeOf(identity.pid);
  return now === null || now === identity.startTime;
}

/** The command line of a process (Linux), or '' where it cannot be read. */
export function commandLineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** A zombie has exited; it only waits for its parent (or init) to collect its status. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** Exists and has not exited (a zombie has). */
export function isRunning(pid: number): boolean {
  return processExists(pid) && !isZombie(pid);
}

/** Resolves once the process is gone, or false after timeoutMs. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}
