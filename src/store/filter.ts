/**
 * The EventFilter rule in one place, for code that checks an event it already holds: the consumer runtime
 * (which hands each processor its part of a shared page), LogFollower's wake-ups, the KurrentDB adapter
 * after the server's coarser filter, test doubles. The SQL adapter states the same rule in SQL (sql-event-store.ts, filterConditions).
 */
import type { EventFilter, RecordedEvent } from './port.ts';

/** Whether an event passes a filter: every condition that is set must hold. */
export function eventMatches(
  filter: EventFilter | undefined,
  event: Pick<RecordedEvent, 'stream' | 'type'>,
): boolean {
  if (filter?.streamPrefixes && !filter.streamPrefixes.some((prefix) => event.stream.startsWith(prefix))) {
    return false;
  }
  if (filter?.streams && !filter.streams.includes(event.stream)) return false;
  return !filter?.eventTypes || filter.eventTypes.includes(event.type);
}

/**
 * A filter that lets through every event any of `filters` lets through (and maybe more): the shared
 * reader's, which feeds every processor. A condition stays only when every filter sets it.
 */
export function filterUnion(filters: ReadonlyArray<EventFilter | undefined>): EventFilter | undefined {
  if (filters.length === 0 || filters.some((f) => f === undefined)) return undefined;
  const all = filters as readonly EventFilter[];
  const union = <K extends keyof EventFilter>(key: K): string[] | undefined =>
    all.every((f) => f[key] !== undefined)
      ? [...new Set(all.flatMap((f) => [...(f[key] as readonly string[])]))]
      : undefined;
  const streamPrefixes = union('streamPrefixes');
  const streams = union('streams');
  const eventTypes = union('eventTypes');
  if (!streamPrefixes && !streams && !eventTypes) return undefined;
  return {
    ...(streamPrefixes ? { streamPrefixes } : {}),
    ...(streams ? { streams } : {}),
    ...(eventTypes ? { eventTypes } : {}),
  };
}
