/**
 * Where a start's time goes, from what the server leaves behind: its JSON log (pino `time`, epoch ms),
 * the embedded PostgreSQL's log (timestamps in UTC) and the cluster directory's birth time (initdb makes
 * it first, as a staging directory renamed into place). Each phase ends at a mark; a mark that cannot be
 * found leaves its phase, and the one after it, out.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const PHASES = [
  'node start, module imports (Baileys included)',
  'initdb (first start only)',
  'PostgreSQL start → accepting connections',
  'migrations, projections catch-up, instance restore, sinks',
  'HTTP app (routes, schemas) → listening',
  'listening → first 200 on /health',
] as const;

export type Phase = (typeof PHASES)[number];

function lines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** The first pino record at or after `since` whose message satisfies `match`. */
function appMark(logFile: string, since: number, match: (msg: string) => boolean): number | undefined {
  for (const line of lines(logFile)) {
    if (!line.startsWith('{')) continue;
    try {
      const record = JSON.parse(line) as { time?: number; msg?: string };
      if (typeof record.time === 'number' && record.time >= since && match(record.msg ?? ''))
        return record.time;
    } catch {
      // not a log record
    }
  }
  return undefined;
}

/** The first PostgreSQL log line at or after `since` containing `text` (only UTC timestamps are read). */
function postgresMark(logFile: string, since: number, text: string): number | undefined {
  for (const line of lines(logFile)) {
    const match = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?) (UTC|GMT) /.exec(line);
    if (!match || !line.includes(text)) continue;
    const time = Date.parse(`${match[1]}T${match[2]}Z`);
    // The log's clock has ms resolution: allow the mark to fall just before the spawn's ms.
    if (time >= since - 1) return time;
  }
  return undefined;
}

export function startPhases(
  dataDir: string,
  serverLog: string,
  spawnedAt: number,
  healthyAt: number,
): Map<Phase, number> {
  const postgresLog = join(dataDir, 'postgres', 'postgres.log');
  let initdbAt: number | undefined;
  try {
    const born = statSync(join(dataDir, 'postgres', 'cluster')).birthtimeMs;
    if (born >= spawnedAt) initdbAt = born;
  } catch {
    initdbAt = undefined;
  }
  const postgresAt = postgresMark(postgresLog, spawnedAt, 'starting PostgreSQL');
  const marks: Array<[Phase, number | undefined, number | undefined]> = [];
  const readyAt = postgresMark(postgresLog, spawnedAt, 'database system is ready to accept connections');
  const sinksAt = appMark(serverLog, spawnedAt, (msg) => msg === 'sinks started');
  const listeningAt = appMark(serverLog, spawnedAt, (msg) => msg.startsWith('Server listening'));
  marks.push([PHASES[0], spawnedAt, initdbAt ?? postgresAt]);
  if (initdbAt !== undefined) marks.push([PHASES[1], initdbAt, postgresAt]);
  marks.push([PHASES[2], postgresAt, readyAt]);
  marks.push([PHASES[3], readyAt, sinksAt]);
  marks.push([PHASES[4], sinksAt, listeningAt]);
  marks.push([PHASES[5], listeningAt, healthyAt]);
  const out = new Map<Phase, number>();
  for (const [phase, from, to] of marks) {
    if (from !== undefined && to !== undefined) out.set(phase, Math.max(0, to - from));
  }
  return out;
}
