/**
 * The consumer runtime on the real PostgreSQL log: one shared reader for every processor at the head; a
 * processor behind catches up on its own and joins without a gap or a repeat; a slow one leaves the shared
 * reader without holding back the others, catches up alone, and comes back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerRuntime } from '../../../src/store/consumers/runtime.ts';
import { createSqlEventLog } from '../../../src/store/sql-event-store.ts';
import {
  START,
  type Checkpoint,
  type EventFilter,
  type EventLog,
  type ProcessorHandle,
  type ReadAllOptions,
  type RecordedEvent,
} from '../../../src/store/port.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';
import { eventually } from '../../support/zapwire.ts';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Read {
  readonly options: ReadAllOptions | undefined;
  readonly ids: readonly string[];
}

/** How the shared reader's reads (pages of `limit` events) are slowed down. */
interface ReaderLag {
  limit?: number;
  /** A random delay up to this after the page was read (the shared reader lags behind). */
  ms: number;
  /** While set, each such read waits for it before its query (its filter already chosen). */
  hold?: Promise<void>;
  /** Reads waiting at `hold`. */
  holding: number;
}

/** The log, with every readAll recorded (what was asked, which events came back), and the reader's lag. */
function recorded(log: EventLog, reads: Read[], slow: ReaderLag): EventLog {
  return new Proxy(log, {
    get(target, key, receiver) {
      if (key === 'readAll') {
        return async (options?: ReadAllOptions) => {
          if (slow.hold && options?.limit === slow.limit) {
            slow.holding += 1;
            await slow.hold;
            slow.holding -= 1;
          }
          const page = await target.readAll(options);
          if (slow.ms > 0 && options?.limit === slow.limit) await sleep(Math.random() * slow.ms);
          reads.push({ options, ids: page.events.map((e) => e.id) });
          return page;
        };
      }
      const value: unknown = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

interface Recorder {
  readonly seen: RecordedEvent[];
  readonly handle: ProcessorHandle;
  /** While set, each batch waits for it before it counts as handled. */
  gate: Promise<void> | undefined;
  /** A random pause per batch up to this many ms (a processor that is sometimes slow). */
  jitterMs: number;
  /** The same, for the batches it reads on its own. */
  catchUpJitterMs: number;
}

describe('consumer runtime', () => {
  let pg: TestPostgres;
  let log: EventLog;
  let runtime: ConsumerRuntime | undefined;
  const reads: Read[] = [];

  beforeAll(async () => {
    pg = await openTestPostgres();
  });
  afterEach(async () => {
    await runtime?.close();
    runtime = undefined;
    await log?.close();
    reads.length = 0;
  });
  afterAll(async () => {
    await pg.close();
  });

  /** The shared reader's reads can be made to lag (pages of its size). */
  const lag: ReaderLag = { limit: undefined, ms: 0, holding: 0 };
  const open = (pageSize: number): ConsumerRuntime => {
    log = createSqlEventLog(pg.db);
    lag.limit = pageSize;
    lag.ms = 0;
    lag.hold = undefined;
    runtime = new ConsumerRuntime(recorded(log, reads, lag), { pageSize });
    return runtime;
  };

  /** A processor with its checkpoint in memory that records what it is handed. */
  const recorder = (
    name: string,
    filter: EventFilter,
    options: { from?: Checkpoint; batchSize?: number } = {},
  ): Recorder => {
    let checkpoint = options.from ?? START;
    const recorder: Recorder = {
      seen: [],
      gate: undefined,
      jitterMs: 0,
      catchUpJitterMs: 0,
      handle: undefined as unknown as ProcessorHandle,
    };
    (recorder as { handle: ProcessorHandle }).handle = runtime!.process({
      name,
      filter,
      batchSize: options.batchSize ?? 100,
      pollIntervalMs: 60_000,
      checkpoint: { load: () => Promise.resolve(checkpoint) },
      async handle(events, range) {
        expect(range.from).toBe(checkpoint);
        if (recorder.gate) await recorder.gate;
        // While it catches up on its own, the reader moves on: its join then lands inside or past the
        // reader's last page, the seam's hard cases.
        const jitter =
          recorder.handle.mode() === 'catching-up' ? recorder.catchUpJitterMs : recorder.jitterMs;
        if (jitter > 0) await sleep(Math.random() * jitter);
        recorder.seen.push(...events);
        checkpoint = range.to;
        return range.to;
      },
    });
    return recorder;
  };

  const live = (r: Recorder): boolean => r.handle.mode() === 'live';

  const appendMany = async (prefix: string, count: number, perAppend = 1): Promise<RecordedEvent[]> => {
    const events: RecordedEvent[] = [];
    for (let i = 0; i < count; i += perAppend) {
      const n = Math.min(perAppend, count - i);
      const batch = Array.from({ length: n }, (_, k) => ({ type: 'Tick', data: { i: i + k } }));
      events.push(...(await log.append(`${prefix}${i % 5}`, batch)).events);
    }
    return events;
  };

  /** Every event the log holds under the prefix, in log order. */
  const logOrder = async (prefix: string): Promise<string[]> => {
    const ids: string[] = [];
    let after: Checkpoint = START;
    for (;;) {
      const page = await log.readAll({ after, limit: 1_000, filter: { streamPrefixes: [prefix] } });
      ids.push(...page.events.map((e) => e.id));
      after = page.next;
      if (page.caughtUp) return ids;
    }
  };

  it('seven processors at the head: each append is read once, by the shared reader', async () => {
    open(500);
    const head = await log.headPosition();
    const filters: EventFilter[] = [
      { streamPrefixes: ['one-'] },
      { streamPrefixes: ['one-'], eventTypes: ['Tick'] },
      { streamPrefixes: ['one-', 'other-'] },
      { streamPrefixes: ['one-a'] },
      { streamPrefixes: ['one-'] },
      { streamPrefixes: ['one-'], eventTypes: ['Tick', 'Tock'] },
      { streamPrefixes: ['one-'] },
    ];
    const processors = filters.map((filter, i) => recorder(`p${i}`, filter, { from: head }));
    await eventually(() => processors.every(live), 5_000);
    const before = reads.length;
    const appended: RecordedEvent[] = [];
    for (let i = 0; i < 10; i++) {
      const result = await log.append(`one-a${i}`, [{ type: 'Tick', data: { i } }]);
      appended.push(...result.events);
      for (const p of processors) expect(await p.handle.waitFor(result.position, 5_000)).toBe(true);
    }
    const during = reads.slice(before);
    // Each event came back from exactly one read; every read in between was the shared reader's.
    for (const event of appended) expect(during.filter((r) => r.ids.includes(event.id))).toHaveLength(1);
    expect(during.every((r) => r.options?.limit === 500)).toBe(true);
    for (const p of processors) expect(p.seen.map((e) => e.id)).toEqual(appended.map((e) => e.id));
    expect(processors.every(live)).toBe(true);
  });

  it('a processor behind catches up on its own while others are live, joins, and gets every event exactly once', async () => {
    open(20);
    const prefix = 'seam-';
    await appendMany(prefix, 300, 3);
    const ahead = recorder('ahead', { streamPrefixes: [prefix] }, { from: await log.headPosition() });
    await eventually(() => live(ahead), 5_000);
    // Writers keep appending while the late one catches up and joins (several times: it is sometimes slow).
    let writing = true;
    let last: Checkpoint = START;
    const writer = (async () => {
      let n = 0;
      while (writing) {
        last = (await appendMany(`${prefix}w${n++}-`, 6, 2)).at(-1)!.position;
        await sleep(10);
      }
    })();
    // The shared reader lags a little: a processor's own read sees events the reader has not read yet.
    lag.ms = 6;
    const late = recorder('late', { streamPrefixes: [prefix] }, { batchSize: 7 });
    late.catchUpJitterMs = 10;
    const flappy = recorder('flappy', { streamPrefixes: [prefix] }, { batchSize: 5 });
    flappy.catchUpJitterMs = 15;
    await eventually(() => live(late), 15_000);
    // Stuck for a while (the reader has more for it than it holds: it leaves), then free (it catches up
    // on its own and joins again), a few times.
    await eventually(() => live(flappy), 15_000);
    for (let round = 0; round < 8; round++) {
      let release!: () => void;
      flappy.gate = new Promise<void>((resolve) => (release = resolve));
      await eventually(() => flappy.handle.mode() === 'catching-up', 15_000);
      flappy.gate = undefined;
      release();
      await eventually(() => live(flappy), 15_000);
    }
    writing = false;
    await writer;
    // The last append (not the head: on a shared server another transaction may keep it from being visible
    // for a moment, and the head says only what is visible now).
    // Generous: every test file shares the run's PostgreSQL, and a transaction another file holds open keeps
    // this append from the gap-safe readers (transaction ids are the server's) until it ends.
    for (const p of [ahead, late, flappy]) expect(await p.handle.waitFor(last, 45_000)).toBe(true);
    const all = await logOrder(prefix);
    expect(late.seen.map((e) => e.id)).toEqual(all);
    expect(flappy.seen.map((e) => e.id)).toEqual(all);
    const fromHead = all.slice(all.indexOf(ahead.seen[0]!.id));
    expect(ahead.seen.map((e) => e.id)).toEqual(fromHead);
    // The late one read on its own (pages of its batch size) before it joined.
    expect(reads.some((r) => r.options?.limit === 7)).toBe(true);
    const overview = runtime!.overview().processors;
    expect(overview.find((p) => p.name === 'late')!.joins).toBeGreaterThanOrEqual(1);
    // The sometimes-stuck one left the shared reader and came back, every time.
    expect(overview.find((p) => p.name === 'flappy')!.joins).toBeGreaterThanOrEqual(9);
    await eventually(() => live(late) && live(flappy), 5_000);
  }, 120_000);

  it('a slow processor leaves the shared reader without holding back the others, catches up alone, and comes back', async () => {
    open(10);
    const prefix = 'slow-';
    const from = await log.headPosition();
    const fast = recorder('fast', { streamPrefixes: [prefix] }, { from });
    const other = recorder('other', { streamPrefixes: [prefix] }, { from });
    const slow = recorder('slow', { streamPrefixes: [prefix] }, { from, batchSize: 4 });
    await eventually(() => [fast, other, slow].every(live), 5_000);
    let release!: () => void;
    slow.gate = new Promise<void>((resolve) => (release = resolve));
    const appended = await appendMany(prefix, 100);
    const last = appended.at(-1)!.position;
    // The others get everything while the slow one is still stuck in its first batch.
    // Generous for the same reason as above (a transaction of another test file on the shared server).
    expect(await fast.handle.waitFor(last, 45_000)).toBe(true);
    expect(await other.handle.waitFor(last, 45_000)).toBe(true);
    expect(slow.seen).toEqual([]);
    expect(slow.handle.mode()).toBe('catching-up');
    const readsBefore = reads.length;
    release();
    slow.gate = undefined;
    expect(await slow.handle.waitFor(last, 45_000)).toBe(true);
    expect(slow.seen.map((e) => e.id)).toEqual(appended.map((e) => e.id));
    expect(fast.seen.map((e) => e.id)).toEqual(appended.map((e) => e.id));
    // It read the rest itself, in pages of its own batch size, then joined again.
    expect(reads.slice(readsBefore).some((r) => r.options?.limit === 4)).toBe(true);
    await eventually(() => live(slow), 5_000);
    const more = await appendMany(prefix, 5);
    for (const p of [fast, other, slow]) expect(await p.handle.waitFor(more.at(-1)!.position)).toBe(true);
    expect(slow.seen.map((e) => e.id)).toEqual([...appended, ...more].map((e) => e.id));
  }, 150_000);

  it('a processor that joins while the shared reader reads with the filter from before it existed misses nothing', async () => {
    open(13);
    const a = recorder('seam-a', { streamPrefixes: ['seam-a-'] }, { from: await log.headPosition() });
    await eventually(() => live(a), 5_000);
    let release!: () => void;
    lag.hold = new Promise<void>((resolve) => (release = resolve));
    // The reader wakes for this append and starts a read with A's filter alone; it waits before its query.
    const forA = await log.append('seam-a-1', [{ type: 'ForA', data: {} }]);
    await eventually(() => lag.holding > 0, 5_000);
    // B registers, finds nothing on its own and joins the reader, whose read is still to run.
    const b = recorder('seam-b', { streamPrefixes: ['seam-b-'] }, { from: forA.position });
    await eventually(() => live(b), 5_000);
    const forB = await log.append('seam-b-1', [{ type: 'ForB', data: {} }]);
    lag.hold = undefined;
    release();
    // That read, without B's streams, reaches past B's event: it must not move B past it unseen.
    expect(await b.handle.waitFor(forB.position, 10_000)).toBe(true);
    expect(b.seen.map((e) => e.id)).toEqual(forB.events.map((e) => e.id));
    expect(await a.handle.waitFor(forA.position, 10_000)).toBe(true);
    expect(a.seen.map((e) => e.id)).toEqual(forA.events.map((e) => e.id));
  });

  it('a failing processor leaves, retries alone under its policy, and the others go on', async () => {
    open(50);
    const prefix = 'fail-';
    const from = await log.headPosition();
    const healthy = recorder('healthy', { streamPrefixes: [prefix] }, { from });
    let failuresLeft = 3;
    const errors: unknown[] = [];
    const seen: string[] = [];
    let checkpoint = from;
    const failing = runtime!.process({
      name: 'failing',
      filter: { streamPrefixes: [prefix] },
      pollIntervalMs: 60_000,
      checkpoint: { load: () => Promise.resolve(checkpoint) },
      failure: { retryDelayMs: 20, onError: (error) => errors.push(error) },
      async handle(events, range) {
        if (events.length > 0 && failuresLeft > 0) {
          failuresLeft -= 1;
          throw new Error('receiver down');
        }
        seen.push(...events.map((e) => e.id));
        checkpoint = range.to;
        return range.to;
      },
    });
    await eventually(() => live(healthy) && failing.mode() === 'live', 5_000);
    const appended = await appendMany(prefix, 10);
    const last = appended.at(-1)!.position;
    expect(await healthy.handle.waitFor(last)).toBe(true);
    expect(await failing.waitFor(last)).toBe(true);
    expect(errors).toHaveLength(3);
    expect(seen).toEqual(appended.map((e) => e.id));
    await eventually(() => failing.mode() === 'live', 5_000);
  });
});
