/**
 * Audit replay: the instance stream folded event by event with the machine's own fold (the function the
 * machine uses to evolve its context, and the one the runtime restores actors with), so every entry shows
 * the state the instance was in right after that event. Pure: no store, no clock.
 */
import {
  evolveInstance,
  type FoldedInstance,
  type InstanceContext,
  type InstanceMachineConfig,
} from '../../machines/instance/index.ts';
import type { ApiState } from '../../machines/instance/index.ts';
import type { RecordedEvent } from '../store/port.ts';
import { activeStateIds, statePath } from './state-ids.ts';

export interface HistoryEntry {
  /** Stream position (1-based): the instance's version after this event. */
  readonly version: number;
  readonly eventId: string;
  readonly type: string;
  /** When the event happened, as recorded in its payload (`data.at`); the recorded time when absent. */
  readonly at: string;
  /** When the store committed it. */
  readonly recordedAt: string;
  readonly data: Readonly<Record<string, unknown>>;
  /** The API state after this event. */
  readonly state: ApiState;
  /** The machine state after this event (`session.qr`, `backoff`, ...). */
  readonly machineState: string;
  /** Active state node ids, outermost first (the diagram highlights these). */
  readonly stateIds: readonly string[];
}

/** What an auditor needs from the context; the full context minus nothing secret (it holds no secrets). */
export interface ContextSummary {
  readonly name: string;
  readonly createdAt: string;
  readonly paired: boolean;
  readonly jid: string | null;
  readonly pushName: string | null;
  readonly lid: string | null;
  readonly connectionSeq: number;
  readonly reconnectAttempt: number;
  readonly qrCount: number;
  readonly openedAt: string | null;
  readonly lastClose: InstanceContext['lastClose'];
  readonly advancedSettings: InstanceContext['advancedSettings'];
  readonly sinks: InstanceContext['sinks'];
  readonly proxy: InstanceContext['proxy'];
}

export interface StateAt {
  readonly at: string;
  readonly state: ApiState;
  readonly machineState: string;
  readonly stateIds: readonly string[];
  /** Events applied (the stream version at that moment). */
  readonly version: number;
  readonly lastEvent: { readonly version: number; readonly type: string; readonly at: string } | null;
  readonly context: ContextSummary;
}

export function summariseContext(context: InstanceContext): ContextSummary {
  return {
    name: context.name,
    createdAt: context.createdAt,
    paired: context.paired,
    jid: context.jid,
    pushName: context.pushName,
    lid: context.lid,
    connectionSeq: context.connectionSeq,
    reconnectAttempt: context.reconnectAttempt,
    qrCount: context.qrCount,
    openedAt: context.openedAt,
    lastClose: context.lastClose,
    advancedSettings: context.advancedSettings,
    sinks: context.sinks,
    proxy: context.proxy,
  };
}

/** When the event happened: `data.at` when it holds one, else the recorded time. */
export function eventTime(event: RecordedEvent): string {
  const at = event.data['at'];
  return typeof at === 'string' ? at : event.createdAt.toISOString();
}

/** The history entry of an event, with the fold right after it. */
export function entryOf(event: RecordedEvent, folded: FoldedInstance): HistoryEntry {
  return {
    version: event.streamPosition,
    eventId: event.id,
    type: event.type,
    at: eventTime(event),
    recordedAt: event.createdAt.toISOString(),
    data: event.data,
    state: folded.apiState,
    machineState: statePath(folded.value),
    stateIds: activeStateIds(folded.value),
  };
}

/** Replays a whole instance stream (oldest first): one entry per event, with the state after it. */
export function replayHistory(
  events: readonly RecordedEvent[],
  config: InstanceMachineConfig = {},
): { entries: HistoryEntry[]; final: FoldedInstance | undefined } {
  let folded: FoldedInstance | undefined;
  const entries: HistoryEntry[] = [];
  for (const event of events) {
    folded = evolveInstance(folded, event, config);
    entries.push(entryOf(event, folded));
  }
  return { entries, final: folded };
}

/**
 * The state at a moment: the fold of every event the store had committed by then (`recordedAt <= at`).
 * undefined when the instance did not exist yet.
 */
export function stateAt(
  events: readonly RecordedEvent[],
  at: Date,
  config: InstanceMachineConfig = {},
): StateAt | undefined {
  let folded: FoldedInstance | undefined;
  let last: RecordedEvent | undefined;
  for (const event of events) {
    if (event.createdAt.getTime() > at.getTime()) break;
    folded = evolveInstance(folded, event, config);
    last = event;
  }
  if (!folded || !last) return undefined;
  return {
    at: at.toISOString(),
    state: folded.apiState,
    machineState: statePath(folded.value),
    stateIds: activeStateIds(folded.value),
    version: last.streamPosition,
    lastEvent: { version: last.streamPosition, type: last.type, at: eventTime(last) },
    context: summariseContext(folded.context),
  };
}
