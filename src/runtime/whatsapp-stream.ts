/**
 * The one writer of `wa-<id>` streams: traffic, sent messages and runtime log lines, the sinks' lines
 * included (a webhook cap reached, a RabbitMQ message returned as unroutable: main.ts gives the sinks a
 * runtime log on this same writer). Every append there is
 * `expectedVersion: 'any'`, so an append that lands after a delete removed the stream would create it
 * again, holding a deleted instance's data forever (a late runtime log line, a send that was in flight).
 * The delete closes the instance here first and waits for the appends in flight; later ones are refused.
 *
 * Appends of one instance are group-committed: one statement at a time per stream, and what arrives while
 * it runs goes together in the next one, in arrival order. A busy chat's messages used to take one
 * statement each, racing on the pool's connections for the stream's lock (so two could even land in the
 * other order); under load they now share statements, and the log keeps the order they arrived in.
 */
import { Errors } from '../domain/errors.ts';
import { whatsappStream } from '../domain/events.ts';
import type { AppendResult, EventLog, NewEvent } from '../store/port.ts';

/** Most events in one group commit (a burst larger than this takes several statements). */
const MAX_EVENTS_PER_APPEND = 200;

interface WaitingAppend {
  readonly events: readonly NewEvent[];
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (error: unknown) => void;
}

interface InstanceWrites {
  readonly waiting: WaitingAppend[];
  /** The statement in flight; settles either way. */
  running: Promise<void> | undefined;
}

export class WhatsAppStreams {
  /** Instances deleted in this process's lifetime (ids only; nothing writes them after a restart). */
  private readonly closed = new Set<string>();
  private readonly writes = new Map<string, InstanceWrites>();

  constructor(private readonly store: Pick<EventLog, 'append'>) {}

  isClosed(instanceId: string): boolean {
    return this.closed.has(instanceId);
  }

  /** Appends to the instance's `wa-` stream; a ZW_ERR_INSTANCE_DELETED once the instance is closed. */
  append(instanceId: string, events: readonly NewEvent[]): Promise<AppendResult> {
    if (this.closed.has(instanceId)) return Promise.reject(Errors.instanceDeleted(instanceId));
    let writes = this.writes.get(instanceId);
    if (!writes) this.writes.set(instanceId, (writes = { waiting: [], running: undefined }));
    const queued = writes;
    const result = new Promise<AppendResult>((resolve, reject) => {
      queued.waiting.push({ events, resolve, reject });
    });
    this.pump(instanceId, queued);
    return result;
  }

  /** Refuses every later append for the instance and resolves once those in flight have landed. */
  async close(instanceId: string): Promise<void> {
    this.closed.add(instanceId);
    let writes = this.writes.get(instanceId);
    while (writes?.running) {
      await writes.running;
      writes = this.writes.get(instanceId);
    }
  }

  private pump(instanceId: string, writes: InstanceWrites): void {
    if (writes.running || writes.waiting.length === 0) {
      if (!writes.running && this.writes.get(instanceId) === writes) this.writes.delete(instanceId);
      return;
    }
    const group: WaitingAppend[] = [];
    let count = 0;
    while (writes.waiting.length > 0) {
      const next = writes.waiting[0]!;
      if (group.length > 0 && count + next.events.length > MAX_EVENTS_PER_APPEND) break;
      group.push(writes.waiting.shift()!);
      count += next.events.length;
    }
    writes.running = this.commit(instanceId, group).finally(() => {
      writes.running = undefined;
      this.pump(instanceId, writes);
    });
  }

  /** One statement for the group; each caller gets the part of the result that is its own. */
  private async commit(instanceId: string, group: readonly WaitingAppend[]): Promise<void> {
    let result: AppendResult;
    try {
      result = await this.store.append(
        whatsappStream(instanceId),
        group.flatMap((waiting) => waiting.events),
        { expectedVersion: 'any' },
      );
    } catch (error) {
      for (const waiting of group) waiting.reject(error);
      return;
    }
    let offset = 0;
    for (const waiting of group) {
      const own = result.events.slice(offset, offset + waiting.events.length);
      offset += waiting.events.length;
      const last = own[own.length - 1];
      waiting.resolve(
        last ? { nextVersion: last.streamPosition, position: last.position, events: own } : result,
      );
    }
  }
}
