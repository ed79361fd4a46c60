/**
 * The actor host: one XState actor per instance, one mailbox per instance. Every change follows
 * decide (pure transition) → append (expected version) → apply (the live actor), so the event log is the
 * truth and the live actor never runs ahead of it. Commands and WhatsApp signals both come through here.
 */
import { randomUUID } from 'node:crypto';
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { Errors } from '../domain/errors.ts';
import { instanceStream, type InstanceEvent, type WhatsAppEvent } from '../domain/events.ts';
import { isWrongExpectedVersion } from '../store/errors.ts';
import type { AppendResult, EventLog, NewEvent, RecordedEvent } from '../store/port.ts';
import type { WhatsAppConnector } from '../whatsapp/port.ts';
import { createConnectionActor, type SignalRoute } from '../whatsapp/connection-actor.ts';
import {
  decide,
  foldInstance,
  inputOf,
  instanceMachine,
  reconnectDelayWithin,
  restoreSnapshot,
  type InstanceMachineConfig,
  type InstanceMachineEvent,
} from '../../machines/instance/index.ts';
import type { StreamGrowthGuard } from './growth-guard.ts';
import { Mailboxes } from './mailbox.ts';

type LiveMachine = ReturnType<typeof instanceMachine.provide>;
export type LiveSnapshot = ReturnType<Actor<LiveMachine>['getSnapshot']>;

interface Host {
  readonly actor: Actor<LiveMachine>;
  /** Number of events in the instance stream that the actor has applied. */
  version: number;
}

/** What a dispatch recorded: the append and the domain events in it. */
export interface Recorded {
  readonly append: AppendResult;
  readonly events: readonly InstanceEvent[];
}

type RecordedListener = (recorded: Recorded) => void;

export interface ActorHostOptions {
  readonly store: EventLog;
  /** The WhatsApp side, as the machine's connection actor opens it. */
  readonly connector: WhatsAppConnector;
  /** Where connection signals go (they come back here through `dispatch`, or to the traffic module). */
  readonly route: SignalRoute;
  readonly onCommandFailed: (instanceId: string, command: string, error: unknown) => void;
  readonly machineConfig: InstanceMachineConfig;
  readonly reconnect: { readonly baseMs: number; readonly maxMs: number };
  /** Receives the XState inspection stream of every instance actor (the visualizer's live feed). */
  readonly inspect?: (instanceId: string, event: InspectionEvent) => void;
  /** Refuses a tenant's command once the instance's stream grew too fast (growth-guard.ts). */
  readonly growthGuard?: StreamGrowthGuard;
}

export interface DispatchOptions {
  /**
   * A tenant's command: refused (429) when its events would grow the stream past the growth guard's cap.
   * What WhatsApp reports and what the server itself records (restore, shutdown, delete) is never refused.
   */
  readonly limited?: boolean;
  /**
   * Checked in the mailbox, right before deciding: when false the event is not applied. What a command
   * queued ahead of this one changed is visible here, which a check before `dispatch` cannot see.
   */
  readonly stillWanted?: () => boolean;
}

export class ActorHost {
  private readonly hosts = new Map<string, Host>();
  private readonly mailboxes = new Mailboxes();
  private readonly listeners = new Map<string, Set<RecordedListener>>();
  private readonly machine: LiveMachine;

  constructor(private readonly options: ActorHostOptions) {
    const { baseMs, maxMs } = options.reconnect;
    this.machine = instanceMachine.provide({
      actors: {
        whatsappConnection: createConnectionActor(options.connector, options.route, {
          onCommandFailed: options.onCommandFailed,
        }),
      },
      delays: { reconnectDelay: reconnectDelayWithin({ baseMs, capMs: maxMs }) },
    });
  }

  /** Runs `job` in the instance's mailbox: after every queued dispatch for it, before any later one. */
  inMailbox<T>(id: string, job: () => Promise<T>): Promise<T> {
    return this.mailboxes.run(id, job);
  }

  /**
   * decide → append → apply, inside the instance's mailbox. On a version conflict (another node or a
   * racing writer) the stream is reloaded and the command decided once more; a second conflict is a 409.
   * Resolves with what was recorded (undefined when the event recorded nothing) and the live snapshot
   * right after it, before anything later in the mailbox moves it on.
   */
  dispatch(
    id: string,
    event: InstanceMachineEvent,
    options: DispatchOptions = {},
  ): Promise<{ recorded: Recorded | undefined; snapshot: LiveSnapshot }> {
    return this.mailboxes.run(id, async () => {
      const wanted = options.stillWanted?.() ?? true;
      const recorded = wanted ? await this.dispatchNow(id, event, options) : undefined;
      return { recorded, snapshot: (await this.host(id)).actor.getSnapshot() };
    });
  }

  private async dispatchNow(
    id: string,
    event: InstanceMachineEvent,
    options: DispatchOptions,
  ): Promise<Recorded | undefined> {
    let host = await this.host(id);
    for (let attempt = 0; ; attempt += 1) {
      const { emitted } = decide(host.actor.getSnapshot(), event);
      if (emitted.length === 0) {
        // A done (deleted) actor takes no events; others may still change sub-state without recording.
        if (host.actor.getSnapshot().status === 'active') host.actor.send(event);
        return undefined;
      }
      if (options.limited) await this.options.growthGuard?.check(id, host.version, emitted.length);
      try {
        const append = await this.options.store.append(instanceStream(id), emitted.map(toNewEvent), {
          expectedVersion: host.version,
        });
        host.version = append.nextVersion;
        host.actor.send(event);
        const recorded: Recorded = { append, events: emitted };
        for (const listener of this.listeners.get(id) ?? []) listener(recorded);
        return recorded;
      } catch (error) {
        if (!isWrongExpectedVersion(error)) throw error;
        if (attempt >= 1) throw Errors.conflict();
        host = await this.reload(id);
      }
    }
  }

  /**
   * Appends events the machine does not emit (health) to the instance stream, in the mailbox, at the
   * actor's version: the machine's fold ignores them, so the live actor needs only its version moved.
   */
  recordBeside(id: string, events: readonly NewEvent[]): Promise<AppendResult> {
    return this.mailboxes.run(id, async () => {
      let host = await this.host(id);
      for (let attempt = 0; ; attempt += 1) {
        try {
          const append = await this.options.store.append(instanceStream(id), events, {
            expectedVersion: host.version,
          });
          host.version = append.nextVersion;
          return append;
        } catch (error) {
          if (!isWrongExpectedVersion(error) || attempt >= 1) throw error;
          host = await this.reload(id);
        }
      }
    });
  }

  /** When the instance's current mailbox job started; undefined when its mailbox is idle. */
  busySince(id: string): number | undefined {
    return this.mailboxes.busySince(id);
  }

  /**
   * Restarts a stuck actor from its stream: abandons the job it is stuck on (the mailbox stops waiting for
   * it), stops the actor (its socket closes) and loads it again from the log.
   */
  async restart(id: string): Promise<LiveSnapshot> {
    this.mailboxes.abandon(id);
    return this.mailboxes.run(id, async () => (await this.reload(id)).actor.getSnapshot());
  }

  /** The live snapshot, loading the actor from its stream when this process has none yet (404 if none). */
  snapshot(id: string): Promise<LiveSnapshot> {
    return this.mailboxes.run(id, async () => (await this.host(id)).actor.getSnapshot());
  }

  /** The live snapshot when this process has the actor, without loading it. */
  liveSnapshot(id: string): LiveSnapshot | undefined {
    return this.hosts.get(id)?.actor.getSnapshot();
  }

  /**
   * Calls `listener` with what every later dispatch for the instance recorded, right after it was
   * appended and applied. Returns the unsubscribe function.
   */
  onRecorded(id: string, listener: RecordedListener): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(id) === set) this.listeners.delete(id);
    };
  }

  /** Resolves once the live actor satisfies `done` (at once if it does), or after `timeoutMs`. */
  async until(id: string, done: (snapshot: LiveSnapshot) => boolean, timeoutMs: number): Promise<void> {
    const { actor } = await this.mailboxes.run(id, () => this.host(id));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      const subscription = actor.subscribe((snapshot) => {
        if (done(snapshot)) finish();
      });
      function finish(): void {
        clearTimeout(timer);
        subscription.unsubscribe();
        resolve();
      }
      if (done(actor.getSnapshot())) finish();
    });
  }

  /** Stops the instance's actor (its socket closes); the caller runs this inside the mailbox. */
  forget(id: string): void {
    this.hosts.get(id)?.actor.stop();
    this.hosts.delete(id);
  }

  ids(): string[] {
    return [...this.hosts.keys()];
  }

  /** Resolves when every queued job has finished. */
  drain(): Promise<void> {
    return this.mailboxes.drain();
  }

  private startActor(id: string, events: readonly RecordedEvent[]): Host {
    const folded = foldInstance(events, this.options.machineConfig);
    const inspect = this.options.inspect;
    const actor = createActor(this.machine, {
      snapshot: restoreSnapshot(this.machine, folded),
      input: inputOf(folded.context),
      inspect: inspect ? (inspection) => inspect(id, inspection) : undefined,
    });
    actor.start();
    const host: Host = { actor, version: events.at(-1)?.streamPosition ?? 0 };
    this.hosts.set(id, host);
    return host;
  }

  private async host(id: string): Promise<Host> {
    const existing = this.hosts.get(id);
    if (existing) return existing;
    const events = await this.options.store.readStream(instanceStream(id));
    if (events.length === 0) throw Errors.instanceNotFound(id);
    return this.startActor(id, events);
  }

  private async reload(id: string): Promise<Host> {
    this.forget(id);
    return this.host(id);
  }
}

export function toNewEvent(event: InstanceEvent | WhatsAppEvent): NewEvent {
  return { id: randomUUID(), type: event.type, data: { ...event.data } };
}
