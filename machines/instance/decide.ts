/**
 * The runtime's side of the machine: decide what a command records without running anything, and rebuild
 * a snapshot from a folded stream.
 */
import { transition, type SnapshotFrom } from 'xstate';
import type { InstanceEvent } from '../../src/domain/events.ts';
import type { FoldedInstance } from './evolve.ts';
import type { InstanceMachine } from './machine.ts';
import type { InstanceContext, InstanceMachineEvent, InstanceMachineInput } from './types.ts';

export type InstanceSnapshot = SnapshotFrom<InstanceMachine>;

export interface Decided {
  readonly nextSnapshot: InstanceSnapshot;
  /** The domain events to append, in order; empty when the event changes nothing worth recording. */
  readonly emitted: InstanceEvent[];
}

/**
 * The pure step of decide → append → apply: the next snapshot and the events its `emit()` actions would
 * emit, computed with xstate's `transition()`, which runs no action (no socket is opened or closed, no
 * timer is set). After appending `emitted`, send the same `event` to the live actor: it will make the same
 * transition and emit the same events, because the machine reads nothing but its context and the event.
 */
export function decide(snapshot: InstanceSnapshot, event: InstanceMachineEvent): Decided {
  // transition() would still compute a step from a final snapshot; a live actor in `deleted` is done and
  // takes no more events, so neither does decide().
  if (snapshot.status !== 'active') return { nextSnapshot: snapshot, emitted: [] };
  const [nextSnapshot, actions] = transition(snapshot.machine, snapshot, event);
  const emitted: InstanceEvent[] = [];
  for (const action of actions) {
    if ((action.type as string) === 'xstate.emit') {
      emitted.push((action.params as unknown as { event: InstanceEvent }).event);
    }
  }
  return { nextSnapshot, emitted };
}

/**
 * A snapshot in the folded state, for `createActor(machine, { snapshot })`, decide() and audits.
 *
 * It starts nothing: XState does not re-run entry work for a resolved state, so a snapshot in `session.*`
 * has no socket and one in `backoff` has no timer. That is right after a restart (the old socket died with
 * the old process) but such an actor only moves on events. So at boot, dispatch `restore` to every
 * instance (decide → append → send) before anything else: a paired instance that was live, or shut down
 * cleanly, starts a new connection without a QR; a never-paired one that was waiting for a QR goes to
 * `disconnected` (no QR storm after a restart); every other instance ignores it.
 */
export function restoreSnapshot(
  machine: InstanceMachine,
  folded: Pick<FoldedInstance, 'value' | 'context'>,
): InstanceSnapshot {
  return machine.resolveState({ value: folded.value, context: folded.context });
}

/** The fold-shaped view of a snapshot: what restoreSnapshot needs. */
export function foldedOf(snapshot: InstanceSnapshot): Pick<FoldedInstance, 'value' | 'context'> {
  return { value: snapshot.value as FoldedInstance['value'], context: snapshot.context };
}

/**
 * xstate's types require `input` in `createActor(machine, { snapshot, input })` even though a snapshot
 * makes it unused; this is the input that context came from, to satisfy them.
 */
export function inputOf(context: InstanceContext): InstanceMachineInput {
  return {
    at: context.createdAt,
    instanceId: context.instanceId,
    name: context.name,
    createdBy: 'admin',
    advancedSettings: context.advancedSettings,
    sinks: context.sinks,
    proxy: context.proxy,
    qrMaxCount: context.qrMaxCount,
    stableOpenMs: context.stableOpenMs,
  };
}
