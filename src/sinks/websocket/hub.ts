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
 */
import type { Logger } from 'pino';
import type { SinkEventName } from '../../domain/event-names.ts';
import type { Principal } from '../../domain/principal.ts';
import type { Checkpoint, EventStore, RecordedEvent } from '../../store/port.ts';
import { sleep } from '../backoff.ts';
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
} as const;

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
  readonly store: EventStore;
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
}

class HubClient {
  /** Highest position given to this client (or skipped for it). */
  cursor: Checkpoint;
  live = false;
  closed = false;
  lastSent: string | undefined;

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

export class WebSocketHub {
  private readonly clients = new Set<HubClient>();
  private readonly timeline: ConfigTimeline;
  private tail: Checkpoint | undefined;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** A wake-up that arrived while the tail was reading: the next sleep returns at once. */
  private woken = false;
  /** No client: the tail does not read; it jumps to the head when the next client comes. */
  private idle = false;
  private resuming: Promise<void> | undefined;
  private unlisten: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly options: WebSocketHubOptions) {
    this.timeline = new ConfigTimeline(options.store, undefined, options.logger);
  }

  /** The tail's position: a client without `from` starts live from here. */
  position(): Checkpoint | undefined {
    return this.tail;
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
    this.tail = head;
    this.unlisten = this.options.store.onAppended(() => this.ring());
    this.running = this.loop();
  }

  private ring(): void {
    this.woken = true;
    this.wake?.();
  }

  /** Brings an idle tail to the head (configuration included) before a client joins. */
  private resume(): Promise<void> {
    this.resuming ??= (async () => {
      const head = await this.options.store.headPosition();
      await this.timeline.catchUpThrough(head);
      if (this.options.store.compareCheckpoints(head, this.tail!) > 0) this.tail = head;
      this.idle = false;
    })().finally(() => {
      this.resuming = undefined;
    });
    return this.resuming;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten?.();
    this.ring();
    await this.running;
    for (const client of this.clients)
      this.close(client, WS_CLOSE.GOING_AWAY, 'server shutting down; reconnect with ?from=');
  }

  /** Serves a connected socket until it closes. */
  async attach(socket: HubSocket, options: HubClientOptions): Promise<void> {
    if (this.idle && !this.stopped) {
      try {
        await this.resume();
      } catch (error) {
        this.options.logger.warn({ err: error }, 'websocket hub: cannot read the log head');
        socket.close(WS_CLOSE.REPLAY_FAILED, 'cannot read the log; try again');
        return;
      }
    }
    const tail = this.tail;
    if (tail === undefined || this.stopped || socket.readyState !== OPEN) {
      if (socket.readyState === OPEN) socket.close(WS_CLOSE.GOING_AWAY, 'not ready');
      return;
    }
    const client = new HubClient(socket, options, options.from ?? tail);
    this.clients.add(client);
    this.options.metrics.websocketClients(this.clients.size);
    this.ring();
    socket.on('close', () => {
      client.closed = true;
      this.clients.delete(client);
      this.options.metrics.websocketClients(this.clients.size);
    });
    if (options.from === undefined || this.options.store.compareCheckpoints(options.from, tail) >= 0) {
      client.live = true;
      return;
    }
    void this.replay(client, options.from).catch((error: unknown) => {
      this.options.logger.warn({ err: error }, 'websocket replay failed');
      this.close(client, WS_CLOSE.REPLAY_FAILED, 'replay failed; reconnect with ?from=');
    });
  }

  private async loop(): Promise<void> {
    const { store, logger } = this.options;
    while (!this.stopped) {
      if (this.clients.size === 0 && !this.resuming) {
        // Nobody listens: reading the log would be wasted. attach() brings the tail to the head first.
        this.idle = true;
        await this.sleep(60_000);
        continue;
      }
      if (this.resuming) await this.resuming.catch(() => undefined);
      let caughtUp = false;
      this.woken = false;
      try {
        const page = await store.readAll({
          after: this.tail!,
          limit: this.options.pageSize ?? 500,
          filter: SINK_EVENT_FILTER,
        });
        // From here to the assignment of `tail` nothing awaits: joining clients see a consistent seam.
        for (const event of page.events) this.broadcast(event);
        if (store.compareCheckpoints(page.next, this.tail!) > 0) this.tail = page.next;
        caughtUp = page.caughtUp;
      } catch (error) {
        logger.warn({ err: error }, 'websocket hub: reading the log failed; retrying');
        await sleep(1_000);
        continue;
      }
      if (caughtUp) await this.sleep(this.options.pollIntervalMs ?? 250);
    }
  }

  private async sleep(ms: number): Promise<void> {
    if (this.woken || this.stopped) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
    this.woken = false;
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

  /** Reads the log after `from` at the client's pace until it reaches the tail, then makes it live. */
  private async replay(client: HubClient, from: Checkpoint): Promise<void> {
    const { store } = this.options;
    const timeline = new ConfigTimeline(store, undefined, this.options.logger);
    await timeline.catchUpThrough(from);
    let cursor = from;
    while (!client.closed && !this.stopped) {
      const page = await store.readAll({
        after: cursor,
        limit: this.options.pageSize ?? 500,
        filter: SINK_EVENT_FILTER,
      });
      let written: Promise<void> | undefined;
      for (const event of page.events) {
        timeline.apply(event);
        cursor = event.position;
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
      if (store.compareCheckpoints(page.next, cursor) > 0) cursor = page.next;
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
      if (store.compareCheckpoints(cursor, this.tail!) >= 0 || page.caughtUp) {
        if (store.compareCheckpoints(cursor, this.tail!) < 0) continue;
        client.cursor = cursor;
        client.live = true;
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
    this.clients.delete(client);
    this.options.metrics.websocketClients(this.clients.size);
    try {
      client.socket.close(code, reason);
    } catch {
      // already closing
    }
  }
}
