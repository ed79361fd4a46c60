/**
 * The one writer of `wa-<id>` streams: traffic, sent messages and runtime log lines, the sinks' lines
 * included (a webhook cap reached, a RabbitMQ message returned as unroutable: main.ts gives the sinks a
 * runtime log on this same writer). Every append there is
 * `expectedVersion: 'any'`, so an append that lands after a delete removed the stream would create it
 * again, holding a deleted instance's data forever (a late runtime log line, a send that was in flight).
 * The delete closes the instance here first and waits for the appends in flight; later ones are refused.
 */
import { Errors } from '../domain/errors.ts';
import { whatsappStream } from '../domain/events.ts';
import type { AppendResult, EventLog, NewEvent } from '../store/port.ts';

export class WhatsAppStreams {
  /** Instances deleted in this process's lifetime (ids only; nothing writes them after a restart). */
  private readonly closed = new Set<string>();
  private readonly inFlight = new Map<string, Set<Promise<unknown>>>();

  constructor(private readonly store: Pick<EventLog, 'append'>) {}

  isClosed(instanceId: string): boolean {
    return this.closed.has(instanceId);
  }

  /** Appends to the instance's `wa-` stream; a ZW_ERR_INSTANCE_DELETED once the instance is closed. */
  append(instanceId: string, events: readonly NewEvent[]): Promise<AppendResult> {
    if (this.closed.has(instanceId)) return Promise.reject(Errors.instanceDeleted(instanceId));
    const appending = this.store.append(whatsappStream(instanceId), events, { expectedVersion: 'any' });
    let pending = this.inFlight.get(instanceId);
    if (!pending) this.inFlight.set(instanceId, (pending = new Set()));
    // Settles either way (the caller handles the failure): close() only waits for it.
    const tracked: Promise<void> = appending.then(
      () => undefined,
      () => undefined,
    );
    void tracked.then(() => {
      pending.delete(tracked);
      if (pending.size === 0 && this.inFlight.get(instanceId) === pending) this.inFlight.delete(instanceId);
    });
    pending.add(tracked);
    return appending;
  }

  /** Refuses every later append for the instance and resolves once those in flight have landed. */
  async close(instanceId: string): Promise<void> {
    this.closed.add(instanceId);
    await Promise.allSettled([...(this.inFlight.get(instanceId) ?? [])]);
  }
}
