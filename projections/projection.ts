import type { EventFilter, RecordedEvent } from '../src/store/port.ts';
import type { SqlExecutor } from '../src/store/sql.ts';

/**
 * A read model: which events it reads, which tables it owns (emptied on rebuild), and how one event
 * changes them. `apply` must be idempotent per event: a batch may be applied again after a crash
 * between the read-model write and nothing else (the checkpoint commits in the same transaction, so in
 * practice only a rebuild replays).
 */
export interface Projection {
  readonly name: string;
  readonly filter: EventFilter;
  readonly tables: readonly string[];
  apply(tx: SqlExecutor, event: RecordedEvent): Promise<void>;
}

/** Reads a typed payload field that projections rely on; a malformed event is a bug, so throw. */
export function field<T>(event: RecordedEvent, key: string): T {
  if (!(key in event.data)) throw new Error(`${event.type} ${event.id}: missing field "${key}"`);
  return event.data[key] as T;
}

/** A projection's name in the store's tables: its checkpoint (es_subscriptions) and its dead letters. */
export function projectionSubscription(name: string): string {
  return `projection:${name}`;
}
