/**
 * Instance sink configuration "as of the event", folded from the log itself.
 *
 * InstanceCreated and EventSinksConfigured carry the complete SinkSettings, so a sink subscription decides
 * what to deliver from the events that precede the one at hand, in log order: a webhook URL changed at
 * position P applies to events after P and never to earlier ones, whatever the read model says now and
 * however far behind the sink is. Replays and restarts decide the same way (deterministic, no projection
 * involved). The read model (SinkDirectory) is only the fallback for an instance whose InstanceCreated this
 * fold never saw, and the source of webhook secrets, which never enter the log.
 */
import type { Logger } from 'pino';
import type { SinkSettings } from '../domain/events.ts';
import { INSTANCE_STREAM_PREFIX, instanceIdOfStream, instanceStream } from '../domain/events.ts';
import { START, type Checkpoint, type EventLog, type RecordedEvent } from '../store/port.ts';
import type { SinkDirectory } from './directory.ts';

export interface InstanceSinkState {
  readonly id: string;
  readonly name: string;
  readonly sinks: SinkSettings;
  readonly deleted: boolean;
}

export const CONFIG_EVENT_TYPES = ['InstanceCreated', 'EventSinksConfigured', 'InstanceDeleted'] as const;

const PAGE = 1000;

interface Undo {
  readonly upTo: Checkpoint;
  readonly changes: Array<[string, InstanceSinkState | undefined]>;
}

export class ConfigTimeline {
  private readonly instances = new Map<string, InstanceSinkState>();
  /** Every configuration event at or before this position has been applied, none after it. */
  private upTo: Checkpoint = START;
  private undo: Undo | undefined;
  private readonly warnedFallback = new Set<string>();

  constructor(
    private readonly store: Pick<EventLog, 'readAll' | 'compareCheckpoints'>,
    private readonly directory: SinkDirectory | undefined,
    private readonly logger: Logger | undefined,
    /** Fold one instance only (a replay for one tenant reads that instance's stream, not everyone's). */
    private readonly instanceId?: string,
  ) {}

  position(): Checkpoint {
    return this.upTo;
  }

  /**
   * Applies the configuration events after the fold's position and strictly before `position` (the first
   * event of a batch about to be handled), so that batch is judged by the configuration that preceded it.
   */
  catchUpBefore(position: Checkpoint): Promise<void> {
    return this.catchUp(position, false);
  }

  /** Applies the configuration events up to and including `position`, and moves the fold there. */
  async catchUpThrough(position: Checkpoint): Promise<void> {
    await this.catchUp(position, true);
    if (this.store.compareCheckpoints(this.upTo, position) < 0) this.upTo = position;
  }

  private async catchUp(position: Checkpoint, inclusive: boolean): Promise<void> {
    const beyond = (p: Checkpoint): boolean => {
      const c = this.store.compareCheckpoints(p, position);
      return inclusive ? c > 0 : c >= 0;
    };
    while (this.store.compareCheckpoints(this.upTo, position) < 0) {
      const page = await this.store.readAll({
        after: this.upTo,
        limit: PAGE,
        filter: {
          ...(this.instanceId === undefined
            ? { streamPrefixes: [INSTANCE_STREAM_PREFIX] }
            : { streams: [instanceStream(this.instanceId)] }),
          eventTypes: [...CONFIG_EVENT_TYPES],
        },
      });
      for (const event of page.events) {
        if (beyond(event.position)) return;
        this.apply(event);
      }
      if (page.caughtUp || page.events.length === 0 || beyond(page.next)) return;
      // Only filtered-out events lie between: skip them, but never past `position`.
      this.upTo = page.next;
    }
  }

  /**
   * The caller has applied every configuration event up to `position` (it handed over every event of the
   * instance streams up to there, as a sink's batch does): the fold moves there without reading.
   */
  passedThrough(position: Checkpoint): void {
    if (this.store.compareCheckpoints(position, this.upTo) > 0) this.upTo = position;
  }

  /** Folds one event (any type; non-configuration events only move the position). */
  apply(event: RecordedEvent): void {
    if (this.store.compareCheckpoints(event.position, this.upTo) > 0) this.upTo = event.position;
    const instanceId = instanceIdOfStream(event.stream);
    if (!instanceId || !event.stream.startsWith(INSTANCE_STREAM_PREFIX)) return;
    const current = this.instances.get(instanceId);
    const d = event.data;
    switch (event.type) {
      case 'InstanceCreated':
        this.set(instanceId, {
          id: instanceId,
          name: typeof d['name'] === 'string' ? d['name'] : instanceId,
          sinks: d['sinks'] as SinkSettings,
          deleted: false,
        });
        return;
      case 'EventSinksConfigured':
        if (current) this.set(instanceId, { ...current, sinks: d['sinks'] as SinkSettings });
        return;
      case 'InstanceDeleted':
        if (current) this.set(instanceId, { ...current, deleted: true });
        else this.set(instanceId, { id: instanceId, name: instanceId, sinks: NO_SINKS, deleted: true });
        return;
      default:
        return;
    }
  }

  /** Starts recording changes so a failed batch can be undone and retried against the same state. */
  begin(): void {
    this.undo = { upTo: this.upTo, changes: [] };
  }

  commit(): void {
    this.undo = undefined;
  }

  rollback(): void {
    const undo = this.undo;
    this.undo = undefined;
    if (!undo) return;
    for (const [id, previous] of undo.changes.reverse()) {
      if (previous) this.instances.set(id, previous);
      else this.instances.delete(id);
    }
    this.upTo = undo.upTo;
  }

  /** The instance's configuration as of the last applied event; falls back to the directory. */
  async get(instanceId: string): Promise<InstanceSinkState | undefined> {
    const known = this.instances.get(instanceId);
    if (known) return known.deleted ? undefined : known;
    if (!this.directory) return undefined;
    const config = await this.directory.get(instanceId);
    if (!config) return undefined;
    if (!this.warnedFallback.has(instanceId)) {
      this.warnedFallback.add(instanceId);
      this.logger?.warn(
        { instanceId },
        'sinks: no InstanceCreated in the log for this instance; using its current configuration',
      );
    }
    const state: InstanceSinkState = {
      id: config.id,
      name: config.name,
      sinks: config.sinks,
      deleted: false,
    };
    this.set(instanceId, state);
    return state;
  }

  /** Synchronous lookup without fallback (the WebSocket hub broadcasts synchronously). */
  peek(instanceId: string): InstanceSinkState | undefined {
    const known = this.instances.get(instanceId);
    return known?.deleted ? undefined : known;
  }

  /** Latest known state of every live instance. */
  list(): InstanceSinkState[] {
    return [...this.instances.values()].filter((s) => !s.deleted);
  }

  private set(id: string, state: InstanceSinkState): void {
    this.undo?.changes.push([id, this.instances.get(id)]);
    this.instances.set(id, state);
  }
}

const NO_SINKS: SinkSettings = {
  webhookUrl: null,
  events: [],
  rabbitmqEnable: false,
  websocketEnable: false,
  natsEnable: false,
};
