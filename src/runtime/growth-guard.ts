/**
 * The event log's last line against one tenant filling the disk: an instance's `instance-` stream may
 * gain at most `eventsPerDay` events in any 24 hours; past that, commands that would append to it are
 * refused (429 with Retry-After) until the oldest of those events is a day old. The rate limits
 * (rate-limit.ts) stop bursts; this bounds what even a patient tenant, or a limit set too high, can make
 * the log keep per instance per day (docs/security.md, "Limits per instance").
 *
 * Checked without state of its own: the event `eventsPerDay` positions back in the stream says when the
 * window began (one indexed read, only when the stream is that long), so it holds across restarts and
 * nodes, with every event store. Every event of the stream counts, but only commands are refused:
 * what WhatsApp reports (a close, a QR code) is always recorded, and is bounded by the reconnect backoff
 * and QRCODE_MAX_COUNT.
 */
import { Errors } from '../domain/errors.ts';
import { instanceStream } from '../domain/events.ts';
import type { EventLog } from '../store/port.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

export class StreamGrowthGuard {
  constructor(
    private readonly store: Pick<EventLog, 'readStream'>,
    private readonly eventsPerDay: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws a 429 when `adding` more events would put more than the cap into the last 24 hours. */
  async check(instanceId: string, version: number, adding: number): Promise<void> {
    const cap = this.eventsPerDay;
    if (cap <= 0) return;
    // With the new events the stream would hold version + adding; the cap-th newest must be a day old.
    const position = version + adding - cap;
    if (position < 1) return;
    const [oldest] = await this.store.readStream(instanceStream(instanceId), {
      fromVersion: position,
      limit: 1,
    });
    if (!oldest) return;
    const leavesWindowInMs = oldest.createdAt.getTime() + DAY_MS - this.now();
    if (leavesWindowInMs <= 0) return;
    const waitSeconds = Math.max(1, Math.ceil(leavesWindowInMs / 1000));
    throw Errors.tooMany(
      `this instance recorded ${cap} changes in the last 24 hours, the most it may (INSTANCE_EVENTS_PER_DAY): try again in ${waitSeconds} s`,
      waitSeconds,
    );
  }
}
