/**
 * Memory of a process and all its descendants, read from /proc (Linux only). RSS is what `ps` and most
 * dashboards show; summed over PostgreSQL's processes it counts the shared buffers and the binary's pages
 * once per process that touched them. PSS (proportional set size, from smaps_rollup) shares each such page
 * out between the processes that map it, so the tree's PSS is what the tree really occupies.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessMemory {
  readonly pid: number;
  readonly ppid: number;
  /** The process title: PostgreSQL rewrites it to say what each process is. */
  readonly title: string;
  readonly rssKb: number;
  /** Undefined when smaps_rollup cannot be read (another user's process, an old kernel). */
  readonly pssKb: number | undefined;
}

export interface TreeMemory {
  readonly processes: readonly ProcessMemory[];
  readonly rssKb: number;
  /** Sum of PSS, or undefined when one process's PSS could not be read. */
  readonly pssKb: number | undefined;
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command name) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

/** The pid and every live descendant of it (breadth first), by walking every process's parent. */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (parentOf(pid) === undefined) continue; // gone meanwhile
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

function kbField(text: string, name: string): number | undefined {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

function memoryOf(pid: number): ProcessMemory | undefined {
  let status: string;
  let cmdline: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return undefined;
  }
  const rssKb = kbField(status, 'VmRSS');
  if (rssKb === undefined) return undefined; // a zombie: no memory left
  let pssKb: number | undefined;
  try {
    pssKb = kbField(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss');
  } catch {
    pssKb = undefined;
  }
  return {
    pid,
    ppid: parentOf(pid) ?? 0,
    title: cmdline.split('\0').filter(Boolean).join(' '),
    rssKb,
    pssKb,
  };
}

export function treeMemory(root: number): TreeMemory {
  const processes = descendantsOf(root)
    .map(memoryOf)
    .filter((p): p is ProcessMemory => p !== undefined);
  const pss = processes.map((p) => p.pssKb);
  return {
    processes,
    rssKb: processes.reduce((sum, p) => sum + p.rssKb, 0),
    pssKb: pss.every((v) => v !== undefined) ? pss.reduce((sum, v) => sum + v, 0) : undefined,
  };
}

/**
 * A short name for what a process is: `node`, `postgres (postmaster)`, `postgres: checkpointer`, and all
 * client connections as one `postgres: backend` group.
 */
export function roleOf(process: ProcessMemory): string {
  const title = process.title;
  if (/^postgres: \S+ \S+ \[local\]/.test(title)) return 'postgres: backend (pool connection)';
  if (title.startsWith('postgres: ')) return title.trim();
  if (/\/postgres(\s|$)/.test(title) || title.startsWith('postgres ')) return 'postgres (postmaster)';
  const command = title.split(' ')[0] ?? '';
  return command.split('/').pop() || title;
}

export interface RoleMemory {
  readonly role: string;
  readonly count: number;
  readonly rssKb: number;
  readonly pssKb: number | undefined;
}

export function byRole(tree: TreeMemory): RoleMemory[] {
  const roles = new Map<string, { count: number; rssKb: number; pssKb: number | undefined }>();
  for (const p of tree.processes) {
    const role = roleOf(p);
    const entry = roles.get(role) ?? { count: 0, rssKb: 0, pssKb: 0 };
    entry.count += 1;
    entry.rssKb += p.rssKb;
    entry.pssKb = entry.pssKb === undefined || p.pssKb === undefined ? undefined : entry.pssKb + p.pssKb;
    roles.set(role, entry);
  }
  return [...roles.entries()].map(([role, m]) => ({ role, ...m })).sort((a, b) => b.rssKb - a.rssKb);
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux architecture node runs on

/**
 * CPU time (user + system) the tree has used so far, in ms: its live processes' own time plus the time of
 * children they have already reaped (initdb, for instance). On a loaded machine this is what a start
 * costs, whereas its wall time mostly measures the wait for a core.
 */
export function treeCpuMs(root: number): number {
  let ticks = 0;
  for (const pid of descendantsOf(root)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime: fields 14–17 of stat, 11–14 after the command name.
      ticks += [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
    } catch {
      // gone meanwhile
    }
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}
