/**
 * The EventFilter rule in one place, for code that checks an event it already holds: the projection
 * runner's wake-ups (through LogFollower), the KurrentDB adapter after the server's coarser filter, test
 * doubles. The SQL adapter states the same rule in SQL (sql-event-store.ts, filterConditions).
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
