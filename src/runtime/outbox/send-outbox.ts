/**
 * The outboxes of the instances this node owns (instance-outbox.ts has one). The runtime adopts an
 * instance's outbox when it restores the instance (at boot, or when the cluster gives it this node), which
 * resumes what a crash or a failover left unsent, and stops it when the lease goes.
 */
import { Errors } from '../../domain/errors.ts';
import { outboxStream } from '../../domain/outbox.ts';
import type { EventLog } from '../../store/port.ts';
import { InstanceOutbox, type OutboxDependencies, type OutboxStatus } from './instance-outbox.ts';

export interface SendOutboxOptions extends Omit<OutboxDependencies, 'counted'> {
  readonly store: Pick<EventLog, 'append' | 'readStream' | 'deleteStream'>;
  /** Does this node own the instance (cluster mode); always true in a cluster of one. */
  readonly owns: (instanceId: string) => boolean;
  /** Calls back when the instance's connection opens; returns the unsubscribe. */
  readonly watchOpened: (instanceId: string, opened: () => void) => () => void;
}

export class SendOutbox {
  private readonly outboxes = new Map<string, { outbox: InstanceOutbox; unwatch: () => void }>();
  private stopped = false;
  /** Sends finished on this node, by outcome (metrics). */
  readonly counters = { sent: 0, failed: 0, cancelled: 0 };
  restrictions = 0;
  private readonly dependencies: OutboxDependencies;

  constructor(private readonly options: SendOutboxOptions) {
    this.dependencies = {
      ...options,
      counted: (outcome) => {
        if (outcome === 'restricted') this.restrictions++;
        else this.counters[outcome]++;
      },
    };
  }

  /** The instance's outbox on this node, started (loaded, resuming) if it was not. */
  of(instanceId: string): InstanceOutbox {
    const held = this.outboxes.get(instanceId);
    if (held) return held.outbox;
    if (this.stopped) throw Errors.unavailable('the server is shutting down: send again in a moment', 5);
    if (!this.options.owns(instanceId))
      throw Errors.unavailable('this node does not own the instance (it is moving): send again', 1);
    const outbox = new InstanceOutbox(instanceId, this.dependencies);
    const unwatch = this.options.watchOpened(instanceId, () => outbox.connectionOpened());
    this.outboxes.set(instanceId, { outbox, unwatch });
    outbox.ready.catch((error: unknown) => {
      // Loading failed (the database): forget it, so the next request or adoption loads it again.
      this.options.log(instanceId, 'warn', 'could not load the outbox; it loads again on the next send', {
        error: error instanceof Error ? error.message : String(error),
      });
      if (this.outboxes.get(instanceId)?.outbox === outbox) this.drop(instanceId);
    });
    return outbox;
  }

  /** This node took the instance: resume its sends. */
  adopt(instanceId: string): void {
    if (!this.stopped && this.options.owns(instanceId)) this.of(instanceId);
  }

  /** The lease is gone (or the instance is deleted): stop, and leave the rest to the log. */
  drop(instanceId: string): void {
    const held = this.outboxes.get(instanceId);
    if (!held) return;
    this.outboxes.delete(instanceId);
    held.unwatch();
    held.outbox.stop();
  }

  /** The instance is deleted: its outbox stream and index go too. */
  async forget(instanceId: string): Promise<void> {
    const held = this.outboxes.get(instanceId);
    this.drop(instanceId);
    await held?.outbox.close();
    await this.options.store.deleteStream(outboxStream(instanceId));
    await this.options.index.forget(instanceId);
  }

  stop(): void {
    this.stopped = true;
    for (const id of [...this.outboxes.keys()]) this.drop(id);
  }

  /** The restriction in force on the instance's sends, when its outbox is held here. */
  restrictionOf(
    instanceId: string,
  ): { readonly code: string; readonly reason: string; readonly until: number } | undefined {
    return this.outboxes.get(instanceId)?.outbox.restriction();
  }

  /** Every outbox on this node (the metrics). */
  statuses(): OutboxStatus[] {
    return [...this.outboxes.values()].map(({ outbox }) => outbox.status());
  }
}
