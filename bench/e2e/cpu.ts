/**
 * CPU time of process groups, read from /proc, so the e2e bench can say where a message's CPU goes
 * (the machine has 2 cores: at saturation every process competes for them, and the CPU a path spends per
 * message is what bounds its throughput).
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** utime + stime, in ms. */
  readonly cpuMs: number;
  /** stime alone (the kernel's share: socket writes, and on loopback the receiver's TCP work), in ms. */
  readonly sysMs: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: the fields after it start at the last ')'.
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    // fields[0] is state (field 3); ppid is field 4, utime 14, stime 15.
    const ppid = Number(fields[1]);
    const ticks = Number(fields[11]) + Number(fields[12]);
    return {
      pid,
      ppid,
      comm,
      cpuMs: (ticks * 1000) / TICKS_PER_SECOND,
      sysMs: (Number(fields[12]) * 1000) / TICKS_PER_SECOND,
    };
  } catch {
    return undefined; // gone meanwhile
  }
}

function allProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) out.push(stat);
  }
  return out;
}

/** The pids of `root` and every descendant, not descending into `stops` (the roots of other groups). */
function treeOf(root: number, processes: readonly ProcStat[], stops: ReadonlySet<number>): Set<number> {
  const children = new Map<number, number[]>();
  for (const p of processes) {
    const list = children.get(p.ppid);
    if (list) list.push(p.pid);
    else children.set(p.ppid, [p.pid]);
  }
  const tree = new Set<number>();
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (tree.has(pid) || (pid !== root && stops.has(pid))) continue;
    tree.add(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** `root` and every process below it, as /proc has them now. */
export function processTree(root: number): number[] {
  return [...treeOf(root, allProcesses(), new Set())];
}

export interface CpuGroups {
  /** Group name → root pids, each with its tree (but for the trees of the other groups' roots). */
  readonly trees: Record<string, readonly number[]>;
  /** A group of every `postgres` process outside the trees (an external server's backends). */
  readonly externalPostgres?: string;
}

export interface CpuSpent {
  readonly cpuMs: number;
  readonly sysMs: number;
}

export type CpuSnapshot = Map<string, Map<number, CpuSpent>>;

/** CPU ms so far per process, by group (processes that exit between two snapshots are not counted). */
export function snapshotCpu(groups: CpuGroups): CpuSnapshot {
  const processes = allProcesses();
  const statOf = new Map(processes.map((p) => [p.pid, p]));
  const snapshot: CpuSnapshot = new Map();
  const claimed = new Set<number>();
  const roots = new Set(Object.values(groups.trees).flat());
  for (const [name, groupRoots] of Object.entries(groups.trees)) {
    const byPid = new Map<number, CpuSpent>();
    for (const root of groupRoots) {
      for (const pid of treeOf(root, processes, roots)) {
        const stat = statOf.get(pid);
        if (stat) byPid.set(pid, stat);
        claimed.add(pid);
      }
    }
    snapshot.set(name, byPid);
  }
  if (groups.externalPostgres) {
    const byPid = new Map<number, CpuSpent>();
    for (const p of processes) if (p.comm === 'postgres' && !claimed.has(p.pid)) byPid.set(p.pid, p);
    snapshot.set(groups.externalPostgres, byPid);
  }
  return snapshot;
}

/** CPU ms spent per group between two snapshots (a process new in `after` counts from zero). */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): Record<string, CpuSpent> {
  const out: Record<string, CpuSpent> = {};
  for (const [name, byPid] of after) {
    const earlier = before.get(name);
    let cpuMs = 0;
    let sysMs = 0;
    for (const [pid, now] of byPid) {
      cpuMs += now.cpuMs - (earlier?.get(pid)?.cpuMs ?? 0);
      sysMs += now.sysMs - (earlier?.get(pid)?.sysMs ?? 0);
    }
    out[name] = { cpuMs, sysMs };
  }
  return out;
}
