/**
 * A tiny stand-in for the runtime, enough to drive the instance machine the way the runtime does:
 * decide (pure) → record → send to the live actor, for commands and for connection signals alike.
 * Time is an xstate SimulatedClock; every `at` follows it.
 */
import { createActor, SimulatedClock, type Actor } from 'xstate';
import { expect } from 'vitest';
import {
  DEFAULT_ADVANCED_SETTINGS,
  DEFAULT_SINK_SETTINGS,
  type InstanceEvent,
  type InstanceEventMap,
} from '../../../src/domain/events.ts';
import {
  apiStateOf,
  decide,
  foldInstance,
  instanceMachine,
  restoreSnapshot,
  inputOf,
  type ApiState,
  type InstanceCommand,
  type InstanceMachine,
  type InstanceMachineConfig,
} from '../../../machines/instance/index.ts';
import {
  createConnectionActor,
  signalToMachineEvent,
  type RoutedSignal,
} from '../../../src/whatsapp/connection-actor.ts';
import {
  FakeWhatsAppConnector,
  type FakeConnection,
  type FakeConnectorOptions,
} from '../../../src/whatsapp/fake.ts';

export const BASE_TIME = Date.parse('2026-01-01T00:00:00.000Z');
export const INSTANCE_ID = 'inst-1';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type CommandWithoutAt = DistributiveOmit<InstanceCommand, 'at'>;

export interface HarnessOptions {
  readonly config?: InstanceMachineConfig;
  readonly fake?: FakeConnectorOptions;
  readonly reconnectDelay?: (args: { context: { reconnectAttempt: number } }) => number;
  readonly created?: Partial<InstanceEventMap['InstanceCreated']>;
  /** Share a connector with an earlier harness: its saved sessions survive a "restart". */
  readonly connector?: FakeWhatsAppConnector;
  /** Start like the runtime at boot: fold this stream, restoreSnapshot, start the actor from it. */
  readonly restoreFrom?: ReadonlyArray<{ type: string; data: unknown }>;
  /** Simulated time (ms after BASE_TIME) to start at. */
  readonly startAt?: number;
}

export class Harness {
  readonly clock = new SimulatedClock();
  readonly fake: FakeWhatsAppConnector;
  readonly machine: InstanceMachine;
  readonly actor: Actor<InstanceMachine>;
  readonly created: InstanceEventMap['InstanceCreated'];
  /** The stream: InstanceCreated, then everything decide() returned, in order. */
  readonly events: Array<{ type: string; data: unknown }> = [];
  /** What the live actor emitted (must equal what decide() predicted). */
  readonly liveEmitted: InstanceEvent[] = [];
  /** Signals the connection routed, waiting for the "mailbox". */
  private readonly pending: RoutedSignal[] = [];
  private flushing = false;

  constructor(private readonly options: HarnessOptions = {}) {
    if (options.startAt) this.clock.set(options.startAt);
    this.fake =
      options.connector ??
      new FakeWhatsAppConnector({ autoResume: false, now: () => this.now(), ...options.fake });
    this.machine = instanceMachine.provide({
      actors: {
        whatsappConnection: createConnectionActor(this.fake, (_id, signal) => {
          this.pending.push(signal);
        }),
      },
      ...(options.reconnectDelay ? { delays: { reconnectDelay: options.reconnectDelay } } : {}),
    });
    const restored = options.restoreFrom ? foldInstance(options.restoreFrom, options.config) : undefined;
    this.created = {
      at: this.at(),
      instanceId: INSTANCE_ID,
      name: 'vendas',
      createdBy: 'admin',
      advancedSettings: DEFAULT_ADVANCED_SETTINGS,
      sinks: DEFAULT_SINK_SETTINGS,
      proxy: null,
      ...options.created,
    };
    if (options.restoreFrom) this.events.push(...options.restoreFrom);
    else this.events.push({ type: 'InstanceCreated', data: this.created });
    this.actor = restored
      ? createActor(this.machine, {
          snapshot: restoreSnapshot(this.machine, restored),
          input: inputOf(restored.context),
          clock: this.clock,
        })
      : createActor(this.machine, { input: { ...this.created, ...options.config }, clock: this.clock });
    this.actor.on('*', (event) => this.liveEmitted.push(event));
    this.actor.start();
  }

  now(): Date {
    return new Date(BASE_TIME + this.clock.now());
  }

  at(): string {
    return this.now().toISOString();
  }

  get snapshot() {
    return this.actor.getSnapshot();
  }

  get context() {
    return this.snapshot.context;
  }

  api(): ApiState {
    return apiStateOf(this.snapshot);
  }

  /** decide → record → apply, then deliver the signals that resulted. Returns what was recorded. */
  dispatch(command: CommandWithoutAt): InstanceEvent[] {
    const emitted = this.apply({ ...command, at: this.at() } as InstanceCommand);
    this.flush();
    return emitted;
  }

  /** Runs `script` against the live fake connection, then delivers the signals it produced. */
  onConnection(script: (connection: FakeConnection) => void): InstanceEvent[] {
    const before = this.events.length;
    script(this.fake.live(INSTANCE_ID));
    this.flush();
    return this.events.slice(before) as InstanceEvent[];
  }

  /** Delivers pending signals; returns what they recorded. */
  flush(): InstanceEvent[] {
    if (this.flushing) return [];
    this.flushing = true;
    const before = this.events.length;
    try {
      for (let signal = this.pending.shift(); signal; signal = this.pending.shift()) {
        const event = signalToMachineEvent(signal, this.at());
        if (event) this.apply(event);
      }
    } finally {
      this.flushing = false;
    }
    return this.events.slice(before) as InstanceEvent[];
  }

  /** Moves time on; timers fire inside the live actor and must record nothing. */
  advance(ms: number): void {
    const before = this.liveEmitted.length;
    this.clock.increment(ms);
    expect(this.liveEmitted.slice(before), 'a timer emitted domain events').toEqual([]);
    this.flush();
  }

  /** Lets microtasks run (for the fake's autoResume / autoQr), then delivers signals. */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await Promise.resolve();
    this.flush();
  }

  fold() {
    return foldInstance(this.events, this.options.config);
  }

  /** The fold of the recorded events is the live actor: same API state, same context. */
  expectFoldMatches(): void {
    const folded = this.fold();
    expect(folded.apiState).toBe(this.api());
    expect(folded.context).toEqual(this.context);
  }

  private apply(event: Parameters<typeof decide>[1]): InstanceEvent[] {
    const { emitted } = decide(this.actor.getSnapshot(), event);
    this.events.push(...emitted);
    // A done actor (deleted) takes no events; xstate would only warn.
    if (this.actor.getSnapshot().status !== 'active') return emitted;
    const before = this.liveEmitted.length;
    this.actor.send(event);
    expect(this.liveEmitted.slice(before), `live actor and decide() disagree on ${event.type}`).toEqual(
      emitted,
    );
    // What the runtime does on SessionRemoved.
    if (emitted.some((e) => e.type === 'SessionRemoved')) void this.fake.removeSession(INSTANCE_ID);
    return emitted;
  }
}

export function typesOf(events: readonly { type: string }[]): string[] {
  return events.map((e) => e.type);
}

export function dataOf<K extends keyof InstanceEventMap>(
  events: readonly InstanceEvent[],
  type: K,
): InstanceEventMap[K] {
  const found = events.find((e) => e.type === type);
  if (!found) throw new Error(`no ${type} among ${typesOf(events).join(', ')}`);
  return found.data as InstanceEventMap[K];
}
