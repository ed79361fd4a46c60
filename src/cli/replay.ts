/**
 * `npm run replay -- <instance> [--at <ISO time>] [--from N] [--limit N] [--json]`
 *
 * Prints an instance's history replayed from the event log (the state after every event), or with --at
 * its state and context at that moment: the same answers as GET /instance/:id/history, for audits from a
 * shell. Opens the store as the app does (DATABASE_URL, EVENTSTORE_URL, else the embedded PostgreSQL
 * under DATA_DIR, the running server's when zapwire is up).
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.ts';
import { MIGRATION_DIRECTORIES } from '../main.ts';
import { openEventStore } from '../store/index.ts';
import { readHistoryPage, readStateAt, resolveInstanceId, MAX_HISTORY_LIMIT } from '../visualizer/audit.ts';
import type { HistoryEntry } from '../visualizer/history.ts';

const USAGE = `usage: npm run replay -- <instance id or name> [--at <ISO time>] [--from N] [--limit N] [--json]`;

interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** One line per event: what happened and the state it left the instance in. */
export function historyTable(entries: readonly HistoryEntry[]): string {
  const rows = entries.map((e) => [String(e.version), e.at, e.type, e.state, e.machineState, detail(e)]);
  const header = ['#', 'time', 'event', 'state', 'machine state', 'detail'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function detail(entry: HistoryEntry): string {
  const d = entry.data;
  switch (entry.type) {
    case 'ConnectionStarting':
      return `trigger=${String(d['trigger'])} attempt=${String(d['attempt'])}`;
    case 'QrCodeIssued':
      return `qr #${String(d['count'])}`;
    case 'InstanceOpened':
      return `jid=${String(d['jid'])}`;
    case 'ConnectionClosed':
      return `reason=${String(d['reason'])} code=${String(d['code'])}${d['willReconnect'] ? ` retry in ${String(d['retryInMs'])} ms` : ''}`;
    case 'SessionRemoved':
      return `reason=${String(d['reason'])}`;
    case 'PairingCodeIssued':
      return `phone=${String(d['phone'])}`;
    default:
      return '';
  }
}

export async function runReplay(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: Output,
): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        at: { type: 'string' },
        from: { type: 'string' },
        limit: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    io.err(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 64;
  }
  const reference = args.positionals[0];
  if (args.values.help || !reference) {
    (args.values.help ? io.out : io.err)(USAGE);
    return args.values.help ? 0 : 64;
  }
  const at = args.values.at === undefined ? undefined : new Date(args.values.at);
  if (at && Number.isNaN(at.getTime())) {
    io.err(`--at "${args.values.at}": expected an ISO 8601 time, e.g. 2026-03-01T12:00:00Z`);
    return 64;
  }
  const from = Number(args.values.from ?? 1);
  const limit = Number(args.values.limit ?? MAX_HISTORY_LIMIT);
  if (!Number.isInteger(from) || from < 1 || !Number.isInteger(limit) || limit < 1) {
    io.err('--from and --limit take whole numbers ≥ 1');
    return 64;
  }

  let config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(error.message);
      return 78;
    }
    throw error;
  }
  const { store, db } = await openEventStore({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    eventStoreUrl: config.eventStoreUrl,
    migrations: MIGRATION_DIRECTORIES,
    attachToRunningServer: true,
  });
  try {
    const machineConfig = { qrMaxCount: config.qrCodeMaxCount };
    const id = await resolveInstanceId(store, db, reference);
    if (!id) {
      io.err(`instance "${reference}" not found (deleted instances leave no history)`);
      return 1;
    }
    if (at) {
      const result = await readStateAt(store, id, at, machineConfig);
      if (result.kind !== 'found') {
        io.err(
          result.kind === 'not-yet'
            ? `instance "${reference}" did not exist yet at ${at.toISOString()} (created ${result.createdAt})`
            : `instance "${reference}" not found`,
        );
        return 1;
      }
      const { state, instance } = result;
      if (args.values.json) io.out(JSON.stringify({ instance, ...state }, null, 2));
      else {
        io.out(`${instance.name} (${instance.id}) at ${state.at}`);
        io.out(
          `state: ${state.state} (machine: ${state.machineState}) after event #${state.version} ${state.lastEvent?.type ?? ''}`,
        );
        io.out('context:');
        for (const [key, value] of Object.entries(state.context))
          io.out(`  ${key}: ${JSON.stringify(value)}`);
      }
      return 0;
    }
    const page = await readHistoryPage(store, id, { from, limit }, machineConfig);
    if (!page) {
      io.err(`instance "${reference}" has no events`);
      return 1;
    }
    if (args.values.json) io.out(JSON.stringify(page, null, 2));
    else {
      io.out(
        `${page.instance.name} (${page.instance.id}): ${page.total} events, now ${page.current?.state ?? '?'}`,
      );
      io.out(historyTable(page.entries));
      if (page.next !== null) io.out(`… more from #${page.next} (--from ${page.next})`);
    }
    return 0;
  } finally {
    await store.close().catch(() => undefined);
    if (db !== (store as unknown)) await db.close().catch(() => undefined);
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('src/cli/replay.ts')) {
  runReplay(process.argv.slice(2), process.env, {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  }).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`replay failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
