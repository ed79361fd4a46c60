/**
 * The live side of the visualizer: an XState `inspect` observer that turns each instance actor's
 * inspection stream into timeline entries (event, from, to, transitions taken, domain events emitted,
 * time) and keeps the newest ones in a bounded ring buffer per instance. Listeners get each entry as it
 * is made (the visualizer's and the manager's WebSockets).
 *
 * Only the instance (root) actor counts: its WhatsApp connection child also reports to the observer.
 * The observer runs inside the actor's event processing, so it stays cheap: no I/O, no context copies.
 */
import type { InspectionEvent, StateValue } from 'xstate';
import { apiStateOfValue, type ApiState } from '../../machines/instance/index.ts';
import { activeStateIds, statePath } from './state-ids.ts';

export const DEFAULT_TIMELINE_CAPACITY = 500;

export interface TimelineEntry {
  /** Increases by one per entry of an instance, across the buffer's lifetime (gaps = dropped entries). */
  readonly seq: number;
  readonly at: string;
  /** The event the actor processed (`connect`, `wa.qr`, `xstate.init` when an actor starts). */
  readonly event: string;
  /** Machine state before (null for an actor's first entry in this process). */
  readonly from: string | null;
  readonly to: string;
  readonly state: ApiState;
  readonly stateIds: readonly string[];
  /** Transitions taken, as `source → target` node ids (target empty for a targetless transition). */
  readonly transitions: readonly string[];
  /** Domain events the machine emitted in this step (what the runtime appended). */
  readonly emitted: readonly string[];
  readonly changed: boolean;
}

export interface LiveState {
  readonly machineState: string;
  readonly state: ApiState;
  readonly stateIds: readonly string[];
  readonly status: string;
}

export type TimelineListener = (instanceId: string, entry: TimelineEntry) => void;

interface Pending {
  event: string;
  transitions: string[];
  emitted: string[];
}

interface InstanceTimeline {
  readonly ring: Array<TimelineEntry | undefined>;
  /** Index of the next write. */
  next: number;
  size: number;
  seq: number;
  current: LiveState | undefined;
  pending: Pending | undefined;
}

export class InspectionLog {
  private readonly timelines = new Map<string, InstanceTimeline>();
  private readonly listeners = new Map<string, Set<TimelineListener>>();
  private readonly everyInstance = new Set<TimelineListener>();

  constructor(
    readonly capacity = DEFAULT_TIMELINE_CAPACITY,
    private readonly clock: () => Date = () => new Date(),
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error('timeline capacity must be ≥ 1');
  }

  /** The function to give the runtime as `inspect`. */
  readonly observe = (instanceId: string, event: InspectionEvent): void => {
    if (event.actorRef.sessionId !== event.rootId) return;
    switch (event.type) {
      case '@xstate.event': {
        this.timeline(instanceId).pending = { event: event.event.type, transitions: [], emitted: [] };
        return;
      }
      case '@xstate.action': {
        const pending = this.timeline(instanceId).pending;
        const action = event.action as { type: string; params?: { event?: { type?: unknown } } };
        if (pending && action.type === 'xstate.emit' && typeof action.params?.event?.type === 'string') {
          pending.emitted.push(action.params.event.type);
        }
        return;
      }
      case '@xstate.microstep': {
        const pending = this.timeline(instanceId).pending;
        if (!pending) return;
        for (const t of event._transitions) {
          const targets = (t.target ?? []).map((s) => s.id).join(',');
          pending.transitions.push(`${t.source.id} → ${targets}`);
        }
        return;
      }
      case '@xstate.snapshot': {
        const snapshot = event.snapshot as { value?: StateValue; status?: string };
        if (snapshot.value === undefined) return;
        this.record(instanceId, event.event.type, snapshot.value, snapshot.status ?? 'active');
        return;
      }
      default:
        return;
    }
  };

  private timeline(instanceId: string): InstanceTimeline {
    let timeline = this.timelines.get(instanceId);
    if (!timeline) {
      timeline = {
        ring: new Array<TimelineEntry | undefined>(this.capacity),
        next: 0,
        size: 0,
        seq: 0,
        current: undefined,
        pending: undefined,
      };
      this.timelines.set(instanceId, timeline);
    }
    return timeline;
  }

  private record(instanceId: string, eventType: string, value: StateValue, status: string): void {
    const timeline = this.timeline(instanceId);
    const pending = timeline.pending?.event === eventType ? timeline.pending : undefined;
    timeline.pending = undefined;
    let state: ApiState;
    try {
      state = apiStateOfValue(value);
    } catch {
      return; // not the instance machine
    }
    const to = statePath(value);
    const from = timeline.current?.machineState ?? null;
    const stateIds = activeStateIds(value);
    timeline.current = { machineState: to, state, stateIds, status };
    timeline.seq += 1;
    const entry: TimelineEntry = {
      seq: timeline.seq,
      at: this.clock().toISOString(),
      event: eventType,
      from,
      to,
      state,
      stateIds,
      transitions: pending?.transitions ?? [],
      emitted: pending?.emitted ?? [],
      changed: from !== to || (pending?.transitions.some((t) => !t.endsWith('→ ')) ?? false),
    };
    timeline.ring[timeline.next] = entry;
    timeline.next = (timeline.next + 1) % this.capacity;
    timeline.size = Math.min(timeline.size + 1, this.capacity);
    this.notify(instanceId, entry);
    // A deleted instance's actor never runs again: its buffer would only hold memory.
    if (state === 'deleted') this.forget(instanceId);
  }

  private notify(instanceId: string, entry: TimelineEntry): void {
    for (const listener of [...(this.listeners.get(instanceId) ?? []), ...this.everyInstance]) {
      try {
        listener(instanceId, entry);
      } catch {
        // A listener's failure must not break the actor that reported.
      }
    }
  }

  /** The buffered entries, oldest first. */
  entries(instanceId: string, limit = this.capacity): TimelineEntry[] {
    const timeline = this.timelines.get(instanceId);
    if (!timeline) return [];
    const out: TimelineEntry[] = [];
    const start = (timeline.next - timeline.size + this.capacity) % this.capacity;
    for (let i = 0; i < timeline.size; i++) {
      const entry = timeline.ring[(start + i) % this.capacity];
      if (entry) out.push(entry);
    }
    return out.slice(-limit);
  }

  /** The state of the instance's live actor as last reported, if it reported in this process. */
  current(instanceId: string): LiveState | undefined {
    return this.timelines.get(instanceId)?.current;
  }

  /** Listens to one instance, or to all with `'*'`. Returns the unsubscribe function. */
  subscribe(instanceId: string | '*', listener: TimelineListener): () => void {
    if (instanceId === '*') {
      this.everyInstance.add(listener);
      return () => this.everyInstance.delete(listener);
    }
    const set = this.listeners.get(instanceId) ?? new Set<TimelineListener>();
    set.add(listener);
    this.listeners.set(instanceId, set);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(instanceId) === set) this.listeners.delete(instanceId);
    };
  }

  forget(instanceId: string): void {
    this.timelines.delete(instanceId);
  }

  /** Instances with a buffer (for tests and diagnostics). */
  trackedInstances(): number {
    return this.timelines.size;
  }
}
