/**
 * The WebSocket sink: one tail of the log per process fans live events out to the connected clients.
 *
 * - Live delivery follows the instance's configuration as of the event: only instances with
 *   websocketEnable, only their subscribed events; a client may narrow further with `?events=`.
 * - The durable checkpoint of this sink is the client's: every frame carries `position`, and a client that
 *   reconnects with `?from=<position>` first replays the log after it (read at the client's pace), then
 *   joins the live tail. The seam has no gap and no repeat: a client accepts only positions above the last
 *   one it was given, and it joins the tail once its replay has reached the tail's position, in the same
 *   synchronous step.
 * - Memory stays bounded: a live client whose unsent bytes exceed `maxBufferedBytes` is closed with 4008
 *   (it resumes with `?from=`); a replaying client is paced instead of buffered.
 * - Load stays bounded per caller: each principal (the admin key, or one instance's token) may hold at most
 *   `maxConnectionsPerPrincipal` sockets and `maxReplaysPerPrincipal` replays at once; /ws answers 429 over
 *   the limit (4029 if a race gets past that check). A replay scoped to one instance (an instance token, or
 *   the admin key with `?instance=`) reads only that instance's two streams, at the database.
 * - The live tail is a processor of the store's consumer runtime (src/store/consumers/runtime.ts) with a
 *   checkpoint in memory: at the head it is fed by the process's one shared reader of the log, like the
 *   projections and the other sinks. Each replay follows the log with a LogFollower of its own.
 */
import type { Logger } from 'pino';
import type { SinkEventName } from '../../domain/event-names.ts';
import { instanceStream, whatsappStream } from '../../domain/events.ts';
import type { Principal } from '../../domain/principal.ts';
import type {
  Checkpoint,
  EventFilter,
  EventStore,
  ProcessorHandle,
  RecordedEvent,
} from '../../store/port.ts';
import { LogFollower } from '../../store/log-follower.ts';
import { ConfigTimeline, type InstanceSinkState } from '../config-timeline.ts';
import { buildEnvelope, serializeEnvelope } from '../envelope.ts';
import type { SinkMetrics } from '../metrics.ts';
import { SINK_EVENT_FILTER, routeOf, wants } from '../routing.ts';

/** Close codes (also in docs/events.md). */
export const WS_CLOSE = {
  /** The client did not keep up; reconnect with `?from=<last position received>`. */
  SLOW_CONSUMER: 4008,
  /** The server is shutting down; reconnect with `?from=`. */
  GOING_AWAY: 1001,
  /** Reading the log failed during the replay; reconnect with `?from=`. */
  REPLAY_FAILED: 4500,
  /** This API key already holds as many sockets (or replays) as it may: close one, then reconnect. */
  TOO_MANY: 4029,
} as const;

/** Default caps per principal (WS_MAX_CONNECTIONS_PER_KEY, WS_MAX_REPLAYS_PER_KEY). */
export const WS_DEFAULT_LIMITS = { connections: 16, replays: 2 } as const;

/** What the hub needs of a socket (the `ws` WebSocket satisfies it). */
export interface HubSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string, callback?: (error?: Error) => void): void;
  close(code?: number, reason?: string): void;
  on(event: 'close', listener: () => void): unknown;
}

const OPEN = 1;

export interface HubClientOptions {
  readonly principal: Principal;
  /** Only these sink events (already normalised); undefined = every event the instance subscribed to. */
  readonly events?: readonly SinkEventName[];
  /** Admin only: one instance, by id or name. */
  readonly instance?: string;
  /** Replay the log after this position first. */
  readonly from?: Checkpoint;
}

export interface WebSocketHubOptions {
  readonly store: Pick<EventStore, 'readAll' | 'headPosition' | 'compareCheckpoints' | 'process'>;
  readonly metrics: SinkMetrics;
  readonly logger: Logger;
  /** A live client with more unsent bytes than this is closed with 4008. Default 4 MiB. */
  readonly maxBufferedBytes?: number;
  /** Events read per page (tail and replays). Default 500. */
  readonly pageSize?: number;
  /** Polling interval (appends by other processes, events that became visible without a signal). Default 250 ms. */
  readonly pollIntervalMs?: number;
  /** A replay page that cannot be written out within this time closes the client with 4008. Default 30 s. */
  readonly replayStallMs?: number;
  /** Sockets one principal may hold at once. Default WS_DEFAULT_LIMITS.connections. */
  readonly maxConnectionsPerPrincipal?: number;
  /** Replays (`?from=` behind the tail) one principal may run at once. Default WS_DEFAULT_LIMITS.replays. */
  readonly maxReplaysPerPrincipal?: number;
}

/** A close reason fits in 123 bytes: the refusal without its first clause ("this API key already ..."). */
function closeReason(refusal: string): string {
  const short = refusal.replace(/^this API key already (holds|runs) \d+ [^(]*\(/, 'too many for this key (');
  return Buffer.byteLength(short) <= 123 ? short : short.slice(0, 120);
}

/** One key per caller: the admin key, or an instance (its token). */
function principalKey(principal: Principal): string {
  return principal.role === 'admin' ? 'admin' : `instance:${principal.instanceId}`;
}

class HubClient {
  /** Highest position given to this client (or skipped for it). */
  cursor: Checkpoint;
  live = false;
  closed = false;
  lastSent: string | undefined;
  /** Holds a replay slot of its principal until it is live or closed. */
  replaying = false;

  constructor(
    readonly socket: HubSocket,
    readonly options: HubClientOptions,
    from: Checkpoint,
  ) {
    this.cursor = from;
  }

  accepts(instance: InstanceSinkState, name: SinkEventName): boolean {
    const p = this.options.principal;
    if (p.role === 'instance' && p.instanceId !== instance.id) return false;
    const only = this.options.instance;
    if (only && only !== instance.id && only.toLowerCase() !== instance.name.toLowerCase()) return false;
    if (this.options.events && !this.options.events.includes(name)) return false;
    return wants(instance.sinks, 'websocket', name);
  }
}

/** The live tail's name in the consumer runtime (its checkpoint is in memory). */
export const WEBSOCKET_TAIL = 'sink-websocket-tail';

export class WebSocketHub {
  private readonly clients = new Set<HubClient>();
  private readonly timeline: ConfigTimeline;
  /** The live tail, a processor of the consumer runtime. Set by start(). */
  private tailProcessor: ProcessorHandle | undefined;
  /** Every event up to here has been broadcast (moved in the same synchronous step as the broadcast). */
  private tailPosition: Checkpoint | undefined;
  private stopped = false;
  /** Sockets and running replays per principal (see principalKey). */
  private readonly held = new Map<string, { connections: number; replays: number }>();

  constructor(private readonly options: WebSocketHubOptions) {
    this.timeline = new ConfigTimeline(options.store, undefined, options.logger);
  }

  /** The tail's position: a client without `from` starts live from here. */
  position(): Checkpoint | undefined {
    return this.tailPosition;
  }

  private get tail(): Checkpoint {
    return this.tailPosition!;
  }

  /**
   * Why this principal may not open another socket now (resuming after `from`, a replay when that lies
   * behind the tail); undefined when it may. The message says what to do (docs/events.md "Limits").
   */
  refusal(principal: Principal, from?: Checkpoint): string | undefined {
    const tail = this.tailPosition;
    const replay =
      from !== undefined && (tail === undefined || this.options.store.compareCheckpoints(from, tail) < 0);
    const held = this.held.get(principalKey(principal)) ?? { connections: 0, replays: 0 };
    const connections = this.options.maxConnectionsPerPrincipal ?? WS_DEFAULT_LIMITS.connections;
    const replays = this.options.maxReplaysPerPrincipal ?? WS_DEFAULT_LIMITS.replays;
    if (held.connections >= connections) {
      return `this API key already holds ${held.connections} WebSocket connections (at most ${connections} at once, WS_MAX_CONNECTIONS_PER_KEY): close one and connect again`;
    }
    if (replay && held.replays >= replays) {
      return `this API key already runs ${held.replays} replays (?from=, at most ${replays} at once, WS_MAX_REPLAYS_PER_KEY): let one reach the live tail or close it, then retry`;
    }
    return undefined;
  }

  private hold(principal: Principal, what: 'connections' | 'replays', delta: 1 | -1): void {
    const key = principalKey(principal);
    const held = this.held.get(key) ?? { connections: 0, replays: 0 };
    held[what] += delta;
    if (held.connections <= 0 && held.replays <= 0) this.held.delete(key);
    else this.held.set(key, held);
  }

  /** Marks a client live and gives back its replay slot. */
  private goLive(client: HubClient): void {
    client.live = true;
    this.endReplay(client);
  }

  private endReplay(client: HubClient): void {
    if (!client.replaying) return;
    client.replaying = false;
    this.hold(client.options.principal, 'replays', -1);
  }

  /** Ends a client: its connection slot (and a replay slot it still holds) go back. */
  private forget(client: HubClient): void {
    if (!this.clients.delete(client)) return;
    this.endReplay(client);
    this.hold(client.options.principal, 'connections', -1);
    this.options.metrics.websocketClients(this.clients.size);
  }

  /** Whether `from` is a position this store can resume after (a malformed one is a 400, not a dead socket). */
  async acceptsPosition(from: Checkpoint): Promise<boolean> {
    try {
      await this.options.store.readAll({ after: from, limit: 1, filter: SINK_EVENT_FILTER });
      return true;
    } catch {
      return false;
    }
  }

  get clientCount(): number {
    return this.clients.size;
  }

  async start(): Promise<void> {
    const head = await this.options.store.headPosition();
    await this.timeline.catchUpThrough(head);
    this.tailPosition = head;
    this.tailProcessor = this.options.store.process({
      name: WEBSOCKET_TAIL,
      filter: SINK_EVENT_FILTER,
      batchSize: this.options.pageSize ?? 500,
      pollIntervalMs: this.options.pollIntervalMs ?? 250,
      // In memory: a client's durable checkpoint is its own (`?from=`); the tail resumes where it is.
      checkpoint: { load: () => Promise.resolve(this.tail) },
      handle: (events, range) => Promise.resolve(this.passOn(events, range.to)),
    });
  }

  /** Broadcasts a batch and moves the tail past it, in one synchronous step (the replays' seam). */
  private passOn(events: readonly RecordedEvent[], to: Checkpoint): Checkpoint {
    const { store } = this.options;
    for (const event of events) {
      if (store.compareCheckpoints(event.position, this.tail) <= 0) continue;
      this.broadcast(event);
      this.tailPosition = event.position;
    }
    if (store.compareCheckpoints(to, this.tail) > 0) this.tailPosition = to;
    return to;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.tailProcessor?.stop();
    for (const client of this.clients)
      this.close(client, WS_CLOSE.GOING_AWAY, 'server shutting down; reconnect with ?from=');
  }

  /** Serves a connected socket until it closes. */
  async attach(socket: HubSocket, options: HubClientOptions): Promise<void> {
    // Counted before the first await, so sockets racing past the route's check are still refused here.
    const refused = this.refusal(options.principal);
    if (refused !== undefined) {
      if (socket.readyState === OPEN) socket.close(WS_CLOSE.TOO_MANY, closeReason(refused));
      return;
    }
    this.hold(options.principal, 'connections', 1);
    let attached = false;
    try {
      attached = await this.join(socket, options);
    } finally {
      if (!attached) this.hold(options.principal, 'connections', -1);
    }
  }

  /** Adds the client (true), or closes the socket when the hub cannot serve it (false). */
  private async join(socket: HubSocket, options: HubClientOptions): Promise<boolean> {
    const tail = this.tailPosition;
    if (tail === undefined || this.stopped || socket.readyState !== OPEN) {
      if (socket.readyState === OPEN) socket.close(WS_CLOSE.GOING_AWAY, 'not ready');
      return false;
    }
    const replay =
      options.from !== undefined && this.options.store.compareCheckpoints(options.from, tail) < 0;
    if (replay) {
      const refused = this.refusal(options.principal, options.from);
      if (refused !== undefined) {
        socket.close(WS_CLOSE.TOO_MANY, closeReason(refused));
        return false;
      }
    }
    const client = new HubClient(socket, options, options.from ?? tail);
    this.clients.add(client);
    this.options.metrics.websocketClients(this.clients.size);
    socket.on('close', () => {
      client.closed = true;
      this.forget(client);
    });
    if (!replay || options.from === undefined) {
      client.live = true;
      return true;
    }
    client.replaying = true;
    this.hold(options.principal, 'replays', 1);
    void this.replay(client, options.from)
      .catch((error: unknown) => {
        this.options.logger.warn({ err: error }, 'websocket replay failed');
        this.close(client, WS_CLOSE.REPLAY_FAILED, 'replay failed; reconnect with ?from=');
      })
      .finally(() => this.endReplay(client));
    return true;
  }

  private broadcast(event: RecordedEvent): void {
    this.timeline.apply(event);
    const route = routeOf(event);
    const instance = route ? this.timeline.peek(route.instanceId) : undefined;
    let frame: string | undefined;
    const maxBuffered = this.options.maxBufferedBytes ?? 4 * 1024 * 1024;
    for (const client of this.clients) {
      if (!client.live || client.closed) continue;
      if (this.options.store.compareCheckpoints(event.position, client.cursor) <= 0) continue;
      client.cursor = event.position;
      if (!route || !instance || !client.accepts(instance, route.name)) continue;
      frame ??= serializeEnvelope(buildEnvelope(event, instance, route.name));
      this.send(client, frame, event, instance);
      if (client.socket.bufferedAmount > maxBuffered) {
        this.options.metrics.slowConsumerClosed();
        this.close(
          client,
          WS_CLOSE.SLOW_CONSUMER,
          'slow consumer: reconnect with ?from=<last position received>',
        );
      }
    }
  }

  private send(
    client: HubClient,
    frame: string,
    event: RecordedEvent,
    instance: InstanceSinkState,
    done?: () => void,
  ): void {
    if (client.socket.readyState !== OPEN) {
      done?.();
      return;
    }
    client.socket.send(frame, done ? () => done() : undefined);
    client.lastSent = event.position;
    this.options.metrics.deliveredOne('websocket', instance, event.createdAt);
  }

  /**
   * What a replay reads: only the instance's two streams when the client is scoped to one instance (its
   * token, or the admin key with ?instance=), so the database reads that instance's events, not the log.
   */
  private replayScope(client: HubClient): { filter: EventFilter; instanceId: string | undefined } {
    const p = client.options.principal;
    const instanceId = p.role === 'instance' ? p.instanceId : client.options.instance;
    if (instanceId === undefined) return { filter: SINK_EVENT_FILTER, instanceId };
    return { filter: { streams: [instanceStream(instanceId), whatsappStream(instanceId)] }, instanceId };
  }

  /** Reads the log after `from` at the client's pace until it reaches the tail, then makes it live. */
  private async replay(client: HubClient, from: Checkpoint): Promise<void> {
    const { store } = this.options;
    const { filter, instanceId } = this.replayScope(client);
    const timeline = new ConfigTimeline(store, undefined, this.options.logger, instanceId);
    await timeline.catchUpThrough(from);
    // No wake-ups: a replay reads without pause until it reaches the tail, which is live already.
    const cursor = new LogFollower(store, {
      after: from,
      filter,
      batchSize: this.options.pageSize ?? 500,
      pollIntervalMs: this.options.pollIntervalMs ?? 250,
    });
    while (!client.closed && !this.stopped) {
      const page = await cursor.read();
      let written: Promise<void> | undefined;
      for (const event of page.events) {
        timeline.apply(event);
        cursor.advance(event.position);
        const route = routeOf(event);
        const instance = route ? timeline.peek(route.instanceId) : undefined;
        if (!route || !instance || !client.accepts(instance, route.name)) continue;
        written = new Promise<void>((resolve) =>
          this.send(
            client,
            serializeEnvelope(buildEnvelope(event, instance, route.name)),
            event,
            instance,
            resolve,
          ),
        );
      }
      cursor.advance(page.next);
      if (written && !(await this.settles(written, this.options.replayStallMs ?? 30_000))) {
        this.options.metrics.slowConsumerClosed();
        this.close(
          client,
          WS_CLOSE.SLOW_CONSUMER,
          'slow consumer: reconnect with ?from=<last position received>',
        );
        return;
      }
      // Synchronous from the comparison to `live = true`: the tail cannot move in between.
      if (store.compareCheckpoints(cursor.position(), this.tail) >= 0 || page.caughtUp) {
        if (store.compareCheckpoints(cursor.position(), this.tail) < 0) continue;
        client.cursor = cursor.position();
        this.goLive(client);
        return;
      }
    }
  }

  private async settles(promise: Promise<void>, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      promise.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
    clearTimeout(timer);
    return result;
  }

  private close(client: HubClient, code: number, reason: string): void {
    if (client.closed) return;
    client.closed = true;
    client.live = false;
    this.forget(client);
    try {
      client.socket.close(code, reason);
    } catch {
      // already closing
    }
  }
}
