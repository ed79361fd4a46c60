/**
 * Audit reads over the event store: one instance's history page, its state at a moment, and the lookup of
 * an instance by id or name. Shared by the REST routes, the visualizer and the replay CLI.
 */
import { instanceStream } from '../domain/events.ts';
import type { EventLog } from '../store/port.ts';
import type { InstanceMachineConfig } from '../../machines/instance/index.ts';
import { replayHistory, stateAt, summariseContext, type HistoryEntry, type StateAt } from './history.ts';
import type { ContextSummary } from './history.ts';

export const DEFAULT_HISTORY_LIMIT = 100;
export const MAX_HISTORY_LIMIT = 1000;

export interface HistoryPage {
  readonly instance: { readonly id: string; readonly name: string };
  /** Events in the stream (its version). */
  readonly total: number;
  readonly from: number;
  readonly limit: number;
  /** `from` of the next page; null on the last one. */
  readonly next: number | null;
  readonly entries: readonly HistoryEntry[];
  /** State and context after the last event of the stream. */
  readonly current: {
    readonly state: string;
    readonly machineState: string;
    readonly stateIds: readonly string[];
    readonly context: ContextSummary;
  } | null;
}

/**
 * The instance an id or name refers to: the read model first (`find`, given by the caller), then the
 * stream (an id) itself.
 */
export async function resolveInstanceId(
  store: EventLog,
  find: (idOrName: string) => Promise<{ readonly id: string } | undefined>,
  reference: string,
): Promise<string | undefined> {
  const view = await find(reference);
  if (view) return view.id;
  return (await store.streamVersion(instanceStream(reference))) > 0 ? reference : undefined;
}

/**
 * A page of the history. The whole stream is folded to reach `from` (a fold step costs microseconds; an
 * instance stream holds lifecycle events only, not messages), and only the page is returned.
 */
export async function readHistoryPage(
  store: EventLog,
  instanceId: string,
  page: { from?: number; limit?: number } = {},
  config: InstanceMachineConfig = {},
): Promise<HistoryPage | undefined> {
  const events = await store.readStream(instanceStream(instanceId));
  if (events.length === 0) return undefined;
  const from = Math.max(1, page.from ?? 1);
  const limit = Math.min(Math.max(1, page.limit ?? DEFAULT_HISTORY_LIMIT), MAX_HISTORY_LIMIT);
  const { entries, final } = replayHistory(events, config);
  const selected = entries.filter((e) => e.version >= from).slice(0, limit);
  const lastVersion = entries.at(-1)?.version ?? 0;
  const lastShown = selected.at(-1)?.version ?? lastVersion;
  const latest = entries.at(-1);
  return {
    instance: { id: instanceId, name: final?.context.name ?? instanceId },
    total: lastVersion,
    from,
    limit,
    next: lastShown < lastVersion ? lastShown + 1 : null,
    entries: selected,
    current:
      final && latest
        ? {
            state: latest.state,
            machineState: latest.machineState,
            stateIds: latest.stateIds,
            context: summariseContext(final.context),
          }
        : null,
  };
}

export type StateAtResult =
  | { readonly kind: 'found'; readonly instance: { id: string; name: string }; readonly state: StateAt }
  | { readonly kind: 'not-yet'; readonly createdAt: string }
  | { readonly kind: 'unknown' };

export async function readStateAt(
  store: EventLog,
  instanceId: string,
  at: Date,
  config: InstanceMachineConfig = {},
): Promise<StateAtResult> {
  const events = await store.readStream(instanceStream(instanceId));
  const first = events[0];
  if (!first) return { kind: 'unknown' };
  const state = stateAt(events, at, config);
  if (!state) return { kind: 'not-yet', createdAt: first.createdAt.toISOString() };
  return { kind: 'found', instance: { id: instanceId, name: state.context.name }, state };
}
