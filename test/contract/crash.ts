/**
 * Crash test: a child process appends and prints acknowledgements; we SIGKILL it mid-stream, reopen the
 * database and check that every acknowledged event is there and that every stream is contiguous.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { START, type Checkpoint, type EventStore, type RecordedEvent } from '../../src/store/port.ts';

const WRITER = fileURLToPath(new URL('../support/crash-writer.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Ack {
  readonly stream: string;
  readonly version: number;
  readonly ids: readonly string[];
}

/** Runs the writer until `ackCount` acknowledgements arrived, then kills it with SIGKILL. */
export async function runAndKillWriter(
  kind: 'embedded' | 'postgres',
  target: string,
  ackCount: number,
): Promise<Ack[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, kind, target], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const acks: Ack[] = [];
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer made ${acks.length} acks in time; stderr: ${stderr}`));
    }, 60_000);
    lines.on('line', (line) => {
      const [tag, stream, version, ids] = line.split(' ');
      if (tag !== 'ack' || !stream || !version || !ids) return;
      acks.push({ stream, version: Number(version), ids: ids.split(',') });
      if (acks.length === ackCount) {
        child.kill('SIGKILL');
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(({ code, signal }) => {
      if (signal !== 'SIGKILL') {
        clearTimeout(timer);
        reject(new Error(`writer exited early (code ${code}, signal ${signal}); stderr: ${stderr}`));
      }
    });
  });
  const { signal } = await exited;
  expect(signal).toBe('SIGKILL');
  lines.close();
  return acks;
}

async function readEverything(store: EventStore): Promise<RecordedEvent[]> {
  const all: RecordedEvent[] = [];
  let after: Checkpoint = START;
  for (;;) {
    const page = await store.readAll({ after, limit: 500 });
    all.push(...page.events);
    after = page.next;
    if (page.caughtUp) return all;
  }
}

/**
 * Every acknowledged event is stored where it was acknowledged; streams and readAll are consistent.
 *
 * The killed writer's backends may still hold a transaction open until the server notices the dead
 * client (on a loaded machine, seconds), and readAll by design returns nothing a running older transaction
 * could precede: the log is read again until the server has rolled them back (at most 30 s), then checked.
 */
export async function verifyAfterCrash(
  store: EventStore,
  acks: readonly Ack[],
): Promise<{ stored: number; acked: number }> {
  const ackedIds = acks.flatMap((ack) => ack.ids);
  const deadline = Date.now() + 30_000;
  let all = await readEverything(store);
  while (Date.now() < deadline) {
    const seen = new Set(all.map((event) => event.id));
    if (ackedIds.every((id) => seen.has(id))) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
    all = await readEverything(store);
  }
  const byId = new Map(all.map((event) => [event.id, event]));
  expect(byId.size).toBe(all.length);
  let acked = 0;
  for (const ack of acks) {
    ack.ids.forEach((id, index) => {
      const event = byId.get(id);
      expect(event, `acknowledged event ${id} is missing`).toBeDefined();
      expect(event!.stream).toBe(ack.stream);
      expect(event!.streamPosition).toBe(ack.version - ack.ids.length + 1 + index);
      acked += 1;
    });
  }
  const streams = new Set(all.map((event) => event.stream));
  for (const stream of streams) {
    const events = await store.readStream(stream);
    const version = await store.streamVersion(stream);
    expect(events.map((event) => event.streamPosition)).toEqual(
      Array.from({ length: version }, (_, i) => i + 1),
    );
    expect(all.filter((event) => event.stream === stream)).toHaveLength(version);
  }
  return { stored: all.length, acked };
}
