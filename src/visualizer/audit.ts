/**
 * Audit reads over the event store: one instance's history page, its state at a moment, and the lookup of
 * an instance by id or name. Shared by the REST routes, the visualizer and the replay CLI.
 *
 * A call never folds an unbounded stream from the start or holds it in memory: it reads the stream in
 * chunks of READ_CHUNK events and starts from the nearest snapshot (the fold at a version) in a
 * HistorySnapshots cache, which every fold fills as it passes. A warm call folds at most about
 * SNAPSHOT_EVERY events to reach its page, the page itself, and up to the stream's end for `current`.
 */
import { instanceStream } from '../domain/events.ts';
import type { EventLog, RecordedEvent } from '../store/port.ts';
import {
  evolveInstance,
  type FoldedInstance,
  type InstanceMachineConfig,
} from '../../machines/instance/index.ts';
import { entryOf, eventTime, summariseContext, type HistoryEntry, type StateAt } from './history.ts';
import { activeStateIds, statePath } from './state-ids.ts';
import type { ContextSummary } from './history.ts';

/** A fold is kept every this many versions (thinned out on long streams, see HistorySnapshots). */
export const SNAPSHOT_EVERY = 100;
/** Events read from the store at once. */
export const READ_CHUNK = 500;

/** The fold of an instance stream up to `version`. */
interface Snapshot {
  readonly version: number;
  /** The event at `version`: a snapshot only continues the stream it was taken of. */
  readonly eventId: string;
  /** The latest `createdAt` among the events up to `version` (for ?at=). */
  readonly maxCreatedAt: number;
  /** The type and time (`data.at`) of the event at `version`. */
  readonly type: string;
  readonly at: string;
  readonly folded: FoldedInstance;
}

/**
 * Folds of instance streams at versions, per instance, in memory and bounded: at most `perInstance` per
 * instance (every second one is dropped when full, so the spacing doubles on long streams) and at most
 * `instances` instances (the least recently used goes).
 */
export class HistorySnapshots {
  private readonly byInstance = new Map<string, Snapshot[]>();

  constructor(
    private readonly instances = 1_000,
    private readonly perInstance = 64,
  ) {}

  /** The latest snapshot that `usable` accepts. */
  nearest(instanceId: string, usable: (snapshot: Snapshot) => boolean): Snapshot | undefined {
    const list = this.byInstance.get(instanceId);
    if (!list) return undefined;
    this.byInstance.delete(instanceId);
    this.byInstance.set(instanceId, list);
    for (let i = list.length - 1; i >= 0; i -= 1) if (usable(list[i]!)) return list[i];
    return undefined;
  }

  record(instanceId: string, snapshot: Snapshot): void {
    let list = this.byInstance.get(instanceId);
    if (!list) {
      list = [];
      this.byInstance.set(instanceId, list);
      if (this.byInstance.size > this.instances) {
        this.byInstance.delete(this.byInstance.keys().next().value!);
      }
    }
    if (list.some((s) => s.version === snapshot.version)) return;
    list.push(snapshot);
    list.sort((a, b) => a.version - b.version);
    if (list.length > this.perInstance) {
      const kept = list.filter((_, i) => i % 2 === 1 || i === list!.length - 1);
      list.splice(0, list.length, ...kept);
    }
  }

  forget(instanceId: string): void {
    this.byInstance.delete(instanceId);
  }

  /** Versions kept for an instance (tests). */
  versions(instanceId: string): number[] {
    return (this.byInstance.get(instanceId) ?? []).map((s) => s.version);
  }
}

/** For callers without a cache of their own (the CLI): every call starts from the stream's beginning. */
const NO_CACHE = new HistorySnapshots(0, 0);

/**
 * Folds the instance stream from `start` (exclusive; the beginning when undefined) up to `toVersion`, in
 * chunks, recording snapshots; `visit` sees each event with the fold after it; the walk ends before the
 * first event `stopBefore` accepts. Returns the last fold reached (undefined when nothing was folded) and
 * whether `start` turned out to belong to another stream (the caller then starts from the beginning).
 */
async function walk(
  store: Pick<EventLog, 'readStream'>,
  instanceId: string,
  start: Snapshot | undefined,
  toVersion: number,
  config: InstanceMachineConfig,
  snapshots: HistorySnapshots,
  visit?: (event: RecordedEvent, folded: FoldedInstance) => void,
  stopBefore?: (event: RecordedEvent) => boolean,
): Promise<{ last: Snapshot | undefined; stale: boolean }> {
  const stream = instanceStream(instanceId);
  let last = start;
  // Starting at a snapshot, read its own event again: another stream under the same name (a deleted and
  // recreated one) must not continue from it.
  let next = start ? start.version : 1;
  let verified = start === undefined;
  while (next <= toVersion) {
    const events = await store.readStream(stream, {
      fromVersion: next,
      toVersion: Math.min(toVersion, next + READ_CHUNK - 1),
    });
    if (events.length === 0) break;
    for (const event of events) {
      if (start && event.streamPosition === start.version) {
        if (event.id !== start.eventId) return { last: undefined, stale: true };
        verified = true;
        continue;
      }
      if (stopBefore?.(event)) return { last, stale: false };
      const folded = evolveInstance(last?.folded, event, config);
      last = {
        version: event.streamPosition,
        eventId: event.id,
        maxCreatedAt: Math.max(last?.maxCreatedAt ?? 0, event.createdAt.getTime()),
        type: event.type,
        at: eventTime(event),
        folded,
      };
      if (event.streamPosition % SNAPSHOT_EVERY === 0) snapshots.record(instanceId, last);
      visit?.(event, folded);
    }
    next = events.at(-1)!.streamPosition + 1;
  }
  return verified ? { last, stale: false } : { last: undefined, stale: true };
}

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
 * A page of the history, folded from the nearest snapshot before `from` (see the module comment); only the
 * page's events and the chunks needed to reach it and the stream's end are read.
 */
export async function readHistoryPage(
  store: Pick<EventLog, 'readStream' | 'streamVersion'>,
  instanceId: string,
  page: { from?: number; limit?: number } = {},
  config: InstanceMachineConfig = {},
  snapshots: HistorySnapshots = NO_CACHE,
): Promise<HistoryPage | undefined> {
  const total = await store.streamVersion(instanceStream(instanceId));
  if (total === 0) {
    snapshots.forget(instanceId);
    return undefined;
  }
  const from = Math.max(1, page.from ?? 1);
  const limit = Math.min(Math.max(1, page.limit ?? DEFAULT_HISTORY_LIMIT), MAX_HISTORY_LIMIT);
  const pageEnd = Math.min(total, from + limit - 1);
  const entries: HistoryEntry[] = [];
  const collect = (event: RecordedEvent, folded: FoldedInstance): void => {
    if (event.streamPosition >= from && entries.length < limit) entries.push(entryOf(event, folded));
  };
  const fold = async (start: Snapshot | undefined, to: number, visit?: typeof collect) => {
    const walked = await walk(store, instanceId, start, to, config, snapshots, visit);
    if (!walked.stale) return walked.last;
    snapshots.forget(instanceId);
    entries.length = 0;
    return (await walk(store, instanceId, undefined, to, config, snapshots, visit)).last;
  };
  let reached = await fold(
    snapshots.nearest(instanceId, (s) => s.version < from && s.version <= pageEnd),
    pageEnd,
    collect,
  );
  if (reached && reached.version < total) {
    // `current` is the state at the stream's end: continue from the page (or a later snapshot).
    const later = snapshots.nearest(instanceId, (s) => s.version <= total);
    reached = await fold(later && later.version > reached.version ? later : reached, total);
  }
  if (!reached) return undefined;
  const lastVersion = reached.version;
  const lastShown = entries.at(-1)?.version ?? lastVersion;
  const final = reached.folded;
  return {
    instance: { id: instanceId, name: final.context.name ?? instanceId },
    total: lastVersion,
    from,
    limit,
    next: lastShown < lastVersion ? lastShown + 1 : null,
    entries,
    current: {
      state: final.apiState,
      machineState: statePath(final.value),
      stateIds: activeStateIds(final.value),
      context: summariseContext(final.context),
    },
  };
}

export type StateAtResult =
  | { readonly kind: 'found'; readonly instance: { id: string; name: string }; readonly state: StateAt }
  | { readonly kind: 'not-yet'; readonly createdAt: string }
  | { readonly kind: 'unknown' };

export async function readStateAt(
  store: Pick<EventLog, 'readStream'>,
  instanceId: string,
  at: Date,
  config: InstanceMachineConfig = {},
  snapshots: HistorySnapshots = NO_CACHE,
): Promise<StateAtResult> {
  const moment = at.getTime();
  let first: RecordedEvent | undefined;
  // The fold of every event the store had committed by then: up to the first one recorded later.
  const stopBefore = (event: RecordedEvent): boolean => {
    first ??= event;
    return event.createdAt.getTime() > moment;
  };
  const everything = Number.MAX_SAFE_INTEGER;
  const start = snapshots.nearest(instanceId, (s) => s.maxCreatedAt <= moment);
  let walked = await walk(store, instanceId, start, everything, config, snapshots, undefined, stopBefore);
  if (walked.stale) {
    snapshots.forget(instanceId);
    first = undefined;
    walked = await walk(store, instanceId, undefined, everything, config, snapshots, undefined, stopBefore);
  }
  const reached = walked.last;
  if (!reached) {
    return first ? { kind: 'not-yet', createdAt: first.createdAt.toISOString() } : { kind: 'unknown' };
  }
  const { folded } = reached;
  const state: StateAt = {
    at: at.toISOString(),
    state: folded.apiState,
    machineState: statePath(folded.value),
    stateIds: activeStateIds(folded.value),
    version: reached.version,
    lastEvent: { version: reached.version, type: reached.type, at: reached.at },
    context: summariseContext(folded.context),
  };
  return { kind: 'found', instance: { id: instanceId, name: folded.context.name }, state };
}
