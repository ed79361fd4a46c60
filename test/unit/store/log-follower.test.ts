/**
 * LogFollower on a log double: the wake-up rules (relevant appends only, none lost while reading), the
 * short retries while an announced position is not visible yet, the poll interval (a safety net only on a
 * log that announces every append), waitFor and stop.
 */
import { describe, expect, it } from 'vitest';
import { LogFollower, SAFETY_NET_POLL_MS, type FollowedLog } from '../../../src/store/log-follower.ts';
import {
  START,
  type AppendResult,
  type Checkpoint,
  type ReadAllOptions,
  type ReadAllResult,
  type RecordedEvent,
} from '../../../src/store/port.ts';
import { compareCheckpoints, encodeCheckpoint } from '../../../src/store/checkpoint.ts';
import { eventMatches } from '../../../src/store/filter.ts';

class FakeLog implements FollowedLog {
  constructor(readonly announcesEveryAppend = false) {}
  readonly events: RecordedEvent[] = [];
  /** Events at or after this index are committed but not visible yet (an older transaction is open). */
  visibleUpTo = Number.POSITIVE_INFINITY;
  reads = 0;
  private readonly listeners = new Set<(result: AppendResult, stream: string) => void>();

  append(stream: string, type = 'E'): AppendResult {
    const position = encodeCheckpoint(1, this.events.length + 1);
    const event: RecordedEvent = {
      id: `e${this.events.length + 1}`,
      stream,
      streamPosition: 1,
      position,
      type,
      data: {},
      metadata: {},
      createdAt: new Date(),
    };
    this.events.push(event);
    const result: AppendResult = { nextVersion: 1, position, events: [event] };
    for (const listener of this.listeners) listener(result, stream);
    return result;
  }

  async readAll(options: ReadAllOptions = {}): Promise<ReadAllResult> {
    this.reads += 1;
    const after = options.after ?? START;
    const visible = this.events.slice(0, Math.min(this.visibleUpTo, this.events.length));
    const pending = visible.filter((e) => compareCheckpoints(e.position, after) > 0);
    const page = pending.filter((e) => eventMatches(options.filter, e)).slice(0, options.limit ?? 1000);
    const head = visible.at(-1)?.position ?? START;
    const full = page.length === (options.limit ?? 1000);
    const next = full ? page.at(-1)!.position : compareCheckpoints(head, after) > 0 ? head : after;
    return { events: page, next, caughtUp: !full };
  }

  compareCheckpoints(a: Checkpoint, b: Checkpoint): number {
    return compareCheckpoints(a, b);
  }

  onAppended(listener: (result: AppendResult, stream: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

const elapsed = async (work: Promise<unknown>): Promise<number> => {
  const started = Date.now();
  await work;
  return Date.now() - started;
};

describe('LogFollower', () => {
  it('pages after its position and moves only when told to', async () => {
    const log = new FakeLog();
    for (let i = 0; i < 5; i++) log.append(`a-${i}`);
    const follower = new LogFollower(log, { batchSize: 2, pollIntervalMs: 1_000 });
    const first = await follower.read();
    expect(first.events.map((e) => e.id)).toEqual(['e1', 'e2']);
    // Not advanced: the same page again (at-least-once is the caller's choice).
    expect((await follower.read()).events.map((e) => e.id)).toEqual(['e1', 'e2']);
    follower.moveTo(first.next);
    expect((await follower.read()).events.map((e) => e.id)).toEqual(['e3', 'e4']);
    follower.advance(START);
    expect(follower.position()).toBe(first.next);
    follower.stop();
  });

  it("with wakeOn 'appended', wakes for appends its filter lets through, not for others", async () => {
    const log = new FakeLog();
    const follower = new LogFollower(log, {
      batchSize: 10,
      pollIntervalMs: 5_000,
      filter: { streamPrefixes: ['mine-'] },
      wakeOn: 'appended',
    });
    const other = follower.idle();
    setTimeout(() => log.append('other-1'), 20);
    const slept = await Promise.race([other.then(() => 'woken'), elapsed(sleep(300)).then(() => 'slept')]);
    expect(slept).toBe('slept');
    setTimeout(() => log.append('mine-1'), 20);
    expect(await elapsed(other)).toBeLessThan(1_000);
    follower.stop();
  });

  it('remembers a wake-up that arrives while it reads: the next sleep ends at once', async () => {
    const log = new FakeLog();
    const follower = new LogFollower(log, { batchSize: 10, pollIntervalMs: 5_000, wakeOn: 'appended' });
    const page = await follower.read();
    log.append('s-1'); // after the read, before the sleep
    follower.moveTo(page.next);
    expect(await elapsed(follower.idle())).toBeLessThan(100);
    follower.stop();
  });

  it('retries soon while an announced position is not visible yet, then polls normally', async () => {
    const log = new FakeLog();
    log.append('s-1');
    log.visibleUpTo = 0; // committed, but an older transaction holds the horizon back
    const follower = new LogFollower(log, { batchSize: 10, pollIntervalMs: 2_000 });
    follower.wake(log.events[0]!.position);
    const readsBefore = log.reads;
    // Announced and not visible: it looks again after 5, 10, 20 … ms instead of 2 s.
    const started = Date.now();
    while (Date.now() - started < 200) {
      const page = await follower.read();
      follower.advance(page.next);
      await follower.idle();
    }
    expect(log.reads - readsBefore).toBeGreaterThanOrEqual(4);
    log.visibleUpTo = Number.POSITIVE_INFINITY;
    const page = await follower.read();
    expect(page.events.map((e) => e.id)).toEqual(['e1']);
    follower.advance(page.next);
    // Caught up with everything announced: a whole poll interval (ended here by stop).
    const idle = follower.idle();
    const done = await Promise.race([idle.then(() => 'woke'), sleep(300).then(() => 'sleeping')]);
    expect(done).toBe('sleeping');
    follower.stop();
    await idle;
  });

  it('polls at its interval, spread ±20 %, unless the log announces every append: then only as a safety net', async () => {
    const intervals = async (log: FakeLog, pollIntervalMs: number, ms: number): Promise<number> => {
      const follower = new LogFollower(log, { batchSize: 10, pollIntervalMs, wakeOn: 'appended' });
      const reads = log.reads;
      const deadline = Date.now() + ms;
      const loop = (async () => {
        while (!follower.isStopped && Date.now() < deadline) {
          follower.advance((await follower.read()).next);
          await follower.idle();
        }
      })();
      await sleep(ms);
      follower.stop();
      await loop;
      return log.reads - reads;
    };
    // 600 ms at 50 ms (40–60 ms apart): 10 to 16 reads.
    const shared = await intervals(new FakeLog(false), 50, 600);
    expect(shared).toBeGreaterThanOrEqual(8);
    expect(shared).toBeLessThanOrEqual(16);
    // The same follower on a single-writer log reads once, then sleeps SAFETY_NET_POLL_MS …
    expect(SAFETY_NET_POLL_MS).toBeGreaterThanOrEqual(5_000);
    const single = new FakeLog(true);
    expect(await intervals(single, 50, 600)).toBe(1);
    // … and an append still wakes it at once.
    const follower = new LogFollower(single, { batchSize: 10, pollIntervalMs: 50, wakeOn: 'appended' });
    follower.advance((await follower.read()).next);
    const idle = follower.idle();
    single.append('s-1');
    expect(await elapsed(idle)).toBeLessThan(100);
    expect((await follower.read()).events.map((e) => e.id)).toEqual(['e1']);
    follower.stop();
  });

  it('waitFor resolves when the position is passed, false on timeout or stop', async () => {
    const log = new FakeLog();
    const { position } = log.append('s-1');
    const follower = new LogFollower(log, { batchSize: 10, pollIntervalMs: 1_000 });
    const reached = follower.waitFor(position, 2_000);
    follower.advance(position);
    expect(await reached).toBe(true);
    expect(await follower.waitFor(encodeCheckpoint(9, 9), 50)).toBe(false);
    const pending = follower.waitFor(encodeCheckpoint(9, 9), 5_000);
    follower.stop();
    follower.settleWaiters();
    expect(await pending).toBe(false);
    expect(await follower.waitFor(encodeCheckpoint(9, 9))).toBe(false);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
