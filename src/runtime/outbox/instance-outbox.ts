/**
 * One instance's outbox, on the node that owns the instance. A send is recorded (`SendRequested`, with the
 * WhatsApp message id it will carry) before it is tried, and its outcome after (`SendSent`, `SendFailed`),
 * in the instance's `outbox-<id>` stream. What is recorded and not finished is sent again, with the same
 * id, by whichever node owns the instance next: a crash between WhatsApp's ack and `SendSent` makes the
 * recipient's phone see the same id twice, and it shows the message once.
 *
 * Sends go out in request order per recipient: the next send to a recipient is encrypted and written once
 * the one before it is written, without waiting for WhatsApp's acknowledgement of it (the socket keeps the
 * order). Up to `maxInFlight` sends wait for their acknowledgement at once. Pacing, a restriction's pause and `sendAt` hold sends back; the queue waits for them.
 */
import { randomUUID } from 'node:crypto';
import { Errors } from '../../domain/errors.ts';
import {
  DEFAULT_SEND_PACING,
  newWhatsAppMessageId,
  outboxStream,
  pickSendPacing,
  type OutboxEvent,
  type OutboxEventMap,
  type SendContent,
  type SendingVerdictEventMap,
  type SendPacing,
} from '../../domain/outbox.ts';
import type { EventLog, NewEvent, RecordedEvent } from '../../store/port.ts';
import { NotConnectedError, type SentText, type WhatsAppConnection } from '../../whatsapp/port.ts';
import type { IndexedSend, OutboxIndex, SendState } from './outbox-index.ts';
import { Pacer } from './pacing.ts';
import { classifySendError, restrictionPauseMs, type Restriction } from './restriction.ts';

/** What the API shows of a send. `sending`: handed to WhatsApp, no answer yet. */
export type SendPhase = SendState | 'sending';

export interface SendView {
  readonly sendId: string;
  readonly messageId: string;
  readonly to: string;
  readonly state: SendPhase;
  readonly requestedAt: string;
  readonly sendAt: string | null;
  readonly finishedAt: string | null;
  readonly sent?: {
    readonly timestamp: string;
    readonly status: string;
    readonly mentions?: readonly string[];
  };
  readonly failure?: { readonly code: string; readonly reason: string };
  /** Why a send not done yet waits, in words. */
  readonly waitingFor?: string;
}

export interface OutboxStatus {
  readonly instanceId: string;
  readonly queued: number;
  readonly scheduled: number;
  readonly sending: number;
  /** When the oldest send that is due (not scheduled for later) was asked for. */
  readonly oldestQueuedAt: string | null;
  readonly oldestWaitMs: number;
  readonly paused: { readonly code: string; readonly reason: string; readonly until: string } | null;
  readonly connected: boolean;
  readonly pacing: SendPacing;
}

export interface SubmitInput {
  readonly to: string;
  readonly content: SendContent;
  readonly sendAt: Date | null;
  readonly idempotencyKey: string | null;
  readonly requestHash: string | null;
  /** The WhatsApp id the caller chose (Evolution GO's `id`); generated when absent. */
  readonly messageId?: string;
}

export interface OutboxDependencies {
  readonly store: Pick<EventLog, 'append' | 'readStream'>;
  readonly index: OutboxIndex;
  readonly connection: (instanceId: string) => WhatsAppConnection | undefined;
  /** Records texts sent (MessageSent in `wa-<id>`, which the sinks carry), in one append. */
  readonly recordSent: (
    instanceId: string,
    sends: ReadonlyArray<{ readonly to: string; readonly text: string; readonly sent: SentText }>,
  ) => Promise<unknown>;
  /** Appends SendingRestricted / SendingResumed to `wa-<id>`. */
  readonly recordVerdict: (instanceId: string, events: readonly NewEvent[]) => Promise<unknown>;
  readonly log: (
    instanceId: string,
    level: 'info' | 'warn',
    message: string,
    context: Record<string, unknown>,
  ) => void;
  /** When the instance's number was paired (for the warm-up ramp); undefined: unknown. */
  readonly pairedAt: (instanceId: string) => Promise<number | undefined>;
  readonly restrictionBackoff: { readonly baseMs: number; readonly maxMs: number };
  readonly maxInFlight: number;
  /** How long idempotency keys are honoured (at least 24 h): the sends of that long are kept in memory. */
  readonly keyRetentionMs: number;
  readonly random?: () => number;
  /** A send finished live on this node, or a restriction paused it (metrics). */
  readonly counted?: (outcome: 'sent' | 'failed' | 'cancelled' | 'restricted') => void;
}

interface SendRecord {
  readonly sendId: string;
  readonly messageId: string;
  readonly to: string;
  readonly requestedAt: string;
  readonly sendAt: string | null;
  readonly idempotencyKey: string | null;
  readonly requestHash: string | null;
  content: SendContent | null;
  state: SendPhase;
  finishedAt: string | null;
  outcome: Record<string, unknown> | null;
  /** A cancel is being recorded: the queue leaves it alone. */
  cancelling: boolean;
  /** WhatsApp acknowledged it; its SendSent is on its way to the log. */
  unrecorded?: boolean;
}

type Waiter = (view: SendView) => void;

/** Retry of a send that found no open connection, and of an index write that failed. */
const RETRY_MS = 2_000;
const READ_PAGE = 500;
/** How long index writes gather before they go. */
const INDEX_DELAY_MS = 50;
/** Events in one append at most. */
const MAX_BATCH = 256;
/** Finished sends stay in the index this long (GET /instance/:id/sends/:sendId). */
const SEND_RETENTION_MS = 7 * 86_400_000;

export class InstanceOutbox {
  private readonly sends = new Map<string, SendRecord>();
  private readonly byKey = new Map<string, string>();
  /** Idempotency keys whose first request is being recorded. */
  private readonly reserving = new Map<string, Promise<void>>();
  /** Sends not done, in request order. */
  private queue: SendRecord[] = [];
  /** Recipients a send is being encrypted and written to: their next send waits for it. */
  private readonly writingTo = new Set<string>();
  /** Sends handed to WhatsApp and not answered yet. */
  private inFlight = 0;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly pacer: Pacer;
  private pause: { until: number; code: string; reason: string } | undefined;
  private pauseStreak = 0;
  private pairedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopped = false;
  /** Deleted: nothing may be appended (the stream would come back). */
  private closed = false;
  private loaded = false;
  private noConnection = false;
  /** Index bookkeeping: stream versions appended, and how far the index may say it has read. */
  private indexedUpTo = 0;
  private readonly landed = new Set<number>();
  private readonly dirty = new Set<string>();
  private pacingDirty = false;
  private flushing: Promise<void> | undefined;
  /** Appends waiting for the one on its way (record()). */
  private readonly appending: Array<{
    events: readonly OutboxEvent[];
    resolve: () => void;
    reject: (error: unknown) => void;
  }> = [];
  private appendingNow: Promise<void> | undefined;
  /** MessageSent appends waiting for the one on its way. */
  private readonly traffic: Array<{
    to: string;
    text: string;
    sent: SentText;
    resolve: () => void;
    reject: (error: unknown) => void;
  }> = [];
  private trafficNow: Promise<void> | undefined;
  readonly ready: Promise<void>;

  constructor(
    readonly instanceId: string,
    private readonly deps: OutboxDependencies,
  ) {
    this.pacer = new Pacer(DEFAULT_SEND_PACING, deps.random);
    this.ready = this.load();
    this.ready.catch(() => undefined);
  }

  // ------------------------------------------------------------------ loading

  private async load(): Promise<void> {
    const { index, store } = this.deps;
    const since = new Date(Date.now() - this.deps.keyRetentionMs);
    const indexed = await index.load(this.instanceId, since);
    this.pacer.change({ ...DEFAULT_SEND_PACING, ...pickSendPacing(indexed.pacing) });
    for (const send of indexed.sends) this.restore(send);
    if (indexed.pause && Date.parse(indexed.pause.until) > Date.now())
      this.pause = { ...indexed.pause, until: Date.parse(indexed.pause.until) };
    else if (indexed.pause) this.pause = { ...indexed.pause, until: Date.now() };
    this.pauseStreak = indexed.pauseStreak;
    let from = indexed.appliedVersion + 1;
    for (;;) {
      const events = await store.readStream(outboxStream(this.instanceId), {
        fromVersion: from,
        limit: READ_PAGE,
      });
      for (const event of events) this.applyRecorded(event);
      const last = events.at(-1);
      if (last) from = last.streamPosition + 1;
      if (events.length < READ_PAGE) break;
    }
    this.indexedUpTo = from - 1;
    this.loaded = true;
    if (this.dirty.size > 0 || from - 1 > indexed.appliedVersion) this.flushIndex();
    this.pairedAt = await this.deps.pairedAt(this.instanceId).catch(() => undefined);
    void index.prune(this.instanceId, new Date(Date.now() - SEND_RETENTION_MS)).catch(() => undefined);
    this.pump();
  }

  private restore(send: IndexedSend): void {
    const record: SendRecord = {
      ...send,
      state: send.state,
      outcome: send.outcome ? { ...send.outcome } : null,
      cancelling: false,
    };
    this.sends.set(send.sendId, record);
    if (send.idempotencyKey) this.byKey.set(send.idempotencyKey, send.sendId);
    if (isOpen(record.state)) this.queue.push(record);
    else if (send.state === 'sent' && send.finishedAt)
      this.pacer.remember(send.to, Date.parse(send.finishedAt));
  }

  /** Folds an event read from the stream (after the index, or live after an append). */
  private applyRecorded(event: RecordedEvent): void {
    const typed = { type: event.type, data: event.data } as unknown as OutboxEvent;
    this.apply(typed);
  }

  private apply(event: OutboxEvent): void {
    switch (event.type) {
      case 'SendRequested': {
        const d = event.data;
        if (this.sends.has(d.sendId)) return;
        const record: SendRecord = {
          sendId: d.sendId,
          messageId: d.messageId,
          to: d.to,
          requestedAt: d.at,
          sendAt: d.sendAt,
          idempotencyKey: d.idempotencyKey,
          requestHash: d.requestHash,
          content: d.content,
          state: d.sendAt ? 'scheduled' : 'queued',
          finishedAt: null,
          outcome: null,
          cancelling: false,
        };
        this.sends.set(d.sendId, record);
        if (d.idempotencyKey) this.byKey.set(d.idempotencyKey, d.sendId);
        this.queue.push(record);
        this.dirty.add(d.sendId);
        return;
      }
      case 'SendSent':
        this.finish(event.data.sendId, 'sent', event.data.at, {
          timestamp: event.data.timestamp,
          status: event.data.status,
          ...(event.data.mentions ? { mentions: event.data.mentions } : {}),
        });
        return;
      case 'SendFailed':
        this.finish(event.data.sendId, 'failed', event.data.at, {
          code: event.data.code,
          reason: event.data.reason,
        });
        return;
      case 'SendCancelled':
        this.finish(event.data.sendId, 'cancelled', event.data.at, null);
        return;
      case 'SendPacingChanged':
        this.pacer.change({ ...DEFAULT_SEND_PACING, ...pickSendPacing(event.data.pacing) });
        this.pacingDirty = true;
        return;
    }
  }

  private finish(
    sendId: string,
    state: SendState,
    at: string,
    outcome: Record<string, unknown> | null,
  ): void {
    const record = this.sends.get(sendId);
    if (record?.state === 'sent' && record.unrecorded && state === 'sent') {
      // Its SendSent landed: the index may say so now.
      record.unrecorded = false;
      record.content = null;
      this.dirty.add(sendId);
      return;
    }
    if (!record || !isOpenOrSending(record.state)) return;
    record.state = state;
    record.finishedAt = at;
    record.outcome = outcome;
    this.queue = this.queue.filter((r) => r !== record);
    // Acknowledged, not recorded yet: the index waits for SendSent (finish is called again then), and the
    // text stays until then, in case it has to go again.
    if (record.unrecorded) {
      this.notify(record);
      if (this.loaded) this.deps.counted?.('sent');
      return;
    }
    record.content = null;
    if (this.loaded && (state === 'sent' || state === 'failed' || state === 'cancelled'))
      this.deps.counted?.(state);
    this.dirty.add(sendId);
    this.notify(record);
  }

  // ------------------------------------------------------------------ recording

  /**
   * Appends to the outbox stream, folds the events, and has the index follow. Appends asked for while one
   * is on its way go together in the next one (one transaction for many sends), in the order asked.
   */
  private record(events: readonly OutboxEvent[]): Promise<void> {
    if (this.closed) return Promise.reject(Errors.instanceDeleted(this.instanceId));
    return new Promise<void>((resolve, reject) => {
      this.appending.push({ events, resolve, reject });
      if (this.appendingNow === undefined) this.appendingNow = this.appendAll();
    });
  }

  private async appendAll(): Promise<void> {
    try {
      while (this.appending.length > 0) {
        const batch = this.appending.splice(0, MAX_BATCH);
        const events = batch.flatMap((item) => item.events);
        try {
          const appended = await this.deps.store.append(
            outboxStream(this.instanceId),
            events.map((e) => ({ type: e.type, data: { ...e.data } })),
            { expectedVersion: 'any' },
          );
          for (let v = appended.nextVersion - events.length + 1; v <= appended.nextVersion; v++)
            this.landed.add(v);
          for (const event of events) this.apply(event);
          while (this.landed.delete(this.indexedUpTo + 1)) this.indexedUpTo++;
          this.flushIndex();
          for (const item of batch) item.resolve();
        } catch (error) {
          for (const item of batch) item.reject(error);
        }
      }
    } finally {
      this.appendingNow = undefined;
    }
  }

  private flushIndex(): void {
    if (this.flushing || this.stopped) return;
    this.flushing = (async () => {
      try {
        // A moment's wait gathers a burst of sends (their request and their outcome) into one write: the
        // index is only a shortcut for the next owner, which reads the stream on from it anyway.
        await sleep(INDEX_DELAY_MS);
        while (this.dirty.size > 0 || this.pacingDirty) {
          const ids = [...this.dirty];
          this.dirty.clear();
          const pacing = this.pacingDirty ? this.pacer.settings : undefined;
          this.pacingDirty = false;
          const sends = ids.flatMap((id) => {
            const record = this.sends.get(id);
            return record ? [indexed(record)] : [];
          });
          try {
            await this.deps.index.write(this.instanceId, this.indexedUpTo, sends, pacing);
          } catch (error) {
            for (const id of ids) this.dirty.add(id);
            if (pacing) this.pacingDirty = true;
            this.deps.log(
              this.instanceId,
              'warn',
              'could not write the outbox index; the log has it, trying again',
              {
                error: error instanceof Error ? error.message : String(error),
              },
            );
            await sleep(RETRY_MS);
            if (this.stopped) return;
          }
        }
      } finally {
        this.flushing = undefined;
      }
    })();
  }

  // ------------------------------------------------------------------ the API

  /**
   * Records a send and queues it. With an idempotency key seen before, returns that send instead (a
   * different request under the same key is a 422).
   */
  async submit(input: SubmitInput): Promise<{ readonly send: SendView; readonly repeated: boolean }> {
    await this.ready;
    if (this.stopped) throw Errors.unavailable('this node no longer owns the instance: send again', 1);
    const key = input.idempotencyKey;
    if (key) {
      // A request with this key is being recorded: wait for it, then answer as a repeat of it.
      const reserving = this.reserving.get(key);
      if (reserving) {
        await reserving;
        return this.submit(input);
      }
      const earlier = this.sends.get(this.byKey.get(key) ?? '');
      if (earlier) {
        if (earlier.requestHash !== input.requestHash) throw Errors.idempotencyKeyReused(key);
        return { send: viewOf(earlier, this.waitingFor(earlier)), repeated: true };
      }
    }
    const sendAt = input.sendAt && input.sendAt.getTime() > Date.now() ? input.sendAt.toISOString() : null;
    const requested: OutboxEventMap['SendRequested'] = {
      at: new Date().toISOString(),
      sendId: randomUUID(),
      messageId: input.messageId ?? newWhatsAppMessageId(),
      to: input.to,
      content: input.content,
      sendAt,
      idempotencyKey: key,
      requestHash: input.requestHash,
    };
    let release!: () => void;
    if (key) this.reserving.set(key, new Promise<void>((resolve) => (release = resolve)));
    try {
      await this.record([{ type: 'SendRequested', data: requested }]);
    } finally {
      if (key) {
        this.reserving.delete(key);
        release();
      }
    }
    this.pump();
    const record = this.sends.get(requested.sendId);
    if (!record) throw new Error(`send ${requested.sendId} was recorded but not folded`);
    return { send: viewOf(record, this.waitingFor(record)), repeated: false };
  }

  /** The send an earlier request with this key made (a 422 when it came with a different request). */
  async repeatOf(key: string, hash: string | null): Promise<SendView | undefined> {
    await this.ready;
    const reserving = this.reserving.get(key);
    if (reserving) await reserving;
    const earlier = this.sends.get(this.byKey.get(key) ?? '');
    if (!earlier) return undefined;
    if (earlier.requestHash !== hash) throw Errors.idempotencyKeyReused(key);
    return viewOf(earlier, this.waitingFor(earlier));
  }

  /** The send as it stands now, or once it is done, whichever comes first within `timeoutMs`. */
  async settled(sendId: string, timeoutMs: number): Promise<SendView | undefined> {
    const record = this.sends.get(sendId);
    if (!record) return undefined;
    if (!isOpenOrSending(record.state) || timeoutMs <= 0 || this.holdsBack(record))
      return viewOf(record, this.waitingFor(record));
    return new Promise<SendView>((resolve) => {
      let set = this.waiters.get(sendId);
      if (!set) this.waiters.set(sendId, (set = new Set()));
      const waiters = set;
      const done = (view: SendView): void => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0) this.waiters.delete(sendId);
        resolve(view);
      };
      const timer = setTimeout(() => done(viewOf(record, this.waitingFor(record))), timeoutMs);
      timer.unref();
      waiters.add(done);
    });
  }

  /** Something other than WhatsApp's answer holds the send back: a caller waiting for it gets a 202 now. */
  private holdsBack(record: SendRecord): boolean {
    // On its way: its own outcome comes soon, even when it is the refusal that just paused sending.
    if (record.state === 'sending') return false;
    const later = record.state === 'scheduled' && Date.parse(record.sendAt ?? '') > Date.now();
    return later || this.pause !== undefined || this.noConnection;
  }

  async view(sendId: string): Promise<SendView | undefined> {
    await this.ready;
    const record = this.sends.get(sendId);
    if (record) return viewOf(record, this.waitingFor(record));
    const found = await this.deps.index.find(this.instanceId, sendId);
    return found ? viewOf(found, undefined) : undefined;
  }

  async cancel(sendId: string): Promise<SendView | undefined> {
    await this.ready;
    const record = this.sends.get(sendId) ?? (await this.deps.index.find(this.instanceId, sendId));
    if (!record) return undefined;
    if (
      (record.state !== 'queued' && record.state !== 'scheduled') ||
      ('cancelling' in record && record.cancelling)
    )
      throw Errors.sendNotCancellable(sendId, record.state);
    // Held from now: the queue must not start it while the cancel is being recorded.
    if ('cancelling' in record) record.cancelling = true;
    try {
      await this.record([{ type: 'SendCancelled', data: { at: new Date().toISOString(), sendId } }]);
    } finally {
      if ('cancelling' in record) record.cancelling = false;
    }
    const after = this.sends.get(sendId);
    return after ? viewOf(after, undefined) : undefined;
  }

  async changePacing(patch: Partial<SendPacing>): Promise<SendPacing> {
    await this.ready;
    const pacing = { ...this.pacer.settings, ...patch };
    await this.record([{ type: 'SendPacingChanged', data: { at: new Date().toISOString(), pacing } }]);
    this.pump();
    return this.pacer.settings;
  }

  async pacing(): Promise<SendPacing> {
    await this.ready;
    return this.pacer.settings;
  }

  status(): OutboxStatus {
    const now = Date.now();
    let queued = 0;
    let scheduled = 0;
    let sending = 0;
    let oldest: string | null = null;
    for (const record of this.queue) {
      if (record.state === 'sending') sending++;
      else if (record.state === 'scheduled' && Date.parse(record.sendAt ?? '') > now) scheduled++;
      else {
        queued++;
        const since = record.sendAt ?? record.requestedAt;
        if (oldest === null || since < oldest) oldest = since;
      }
    }
    return {
      instanceId: this.instanceId,
      queued,
      scheduled,
      sending,
      oldestQueuedAt: oldest,
      oldestWaitMs: oldest ? Math.max(0, now - Date.parse(oldest)) : 0,
      paused: this.pause
        ? {
            code: this.pause.code,
            reason: this.pause.reason,
            until: new Date(this.pause.until).toISOString(),
          }
        : null,
      connected: !this.noConnection,
      pacing: this.pacer.settings,
    };
  }

  /** WhatsApp's restriction in force on this instance's sends (read back from the index after a restart). */
  restriction(): { readonly code: string; readonly reason: string; readonly until: number } | undefined {
    return this.pause && this.pause.until > Date.now() ? { ...this.pause } : undefined;
  }

  /** The connection opened: sends that waited for it go now (and the warm-up learns when it was paired). */
  connectionOpened(): void {
    this.noConnection = false;
    void this.deps
      .pairedAt(this.instanceId)
      .then((at) => (this.pairedAt = at))
      .catch(() => undefined);
    this.pump();
  }

  /**
   * Stops sending (the lease moved, or the process stops): no send starts any more, callers waiting are
   * answered; sends on their way finish and are recorded. What is not done stays in the log.
   */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const record of this.queue) if (isOpen(record.state)) this.notify(record);
  }

  /**
   * The instance is being deleted: nothing is appended any more (a send still on its way finds the outbox
   * closed when it comes back); resolves once the appends already on their way have landed, so none lands
   * after the stream is deleted.
   */
  async close(): Promise<void> {
    this.stop();
    this.closed = true;
    await Promise.allSettled([this.appendingNow, this.trafficNow]);
  }

  // ------------------------------------------------------------------ sending

  private waitingFor(record: SendRecord): string | undefined {
    if (!isOpen(record.state)) return undefined;
    if (record.state === 'scheduled' && record.sendAt && Date.parse(record.sendAt) > Date.now())
      return `scheduled for ${record.sendAt}`;
    if (this.pause)
      return `sending is paused until ${new Date(this.pause.until).toISOString()}: ${this.pause.reason}`;
    if (this.noConnection) return 'the instance is not connected to WhatsApp; the send goes once it is';
    return 'its turn (pacing, or earlier sends to the same recipient)';
  }

  private arm(at: number): void {
    if (this.stopped || at === Infinity) return;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.pump();
      },
      Math.max(0, at - Date.now()),
    );
    this.timer.unref();
  }

  /** Starts every send that may go now; arms a timer for the earliest one that may go later. */
  private pump(): void {
    if (this.stopped) return;
    const now = Date.now();
    if (this.pause) {
      if (now < this.pause.until) return this.arm(this.pause.until);
      this.resume();
    }
    if (!this.deps.connection(this.instanceId)) {
      this.noConnection = true;
      return this.arm(now + RETRY_MS);
    }
    this.noConnection = false;
    let wake = Infinity;
    const blocked = new Set<string>();
    let inFlight = this.inFlight;
    for (const record of this.queue) {
      if (inFlight >= this.deps.maxInFlight) break;
      if (record.state === 'sending') continue;
      if (record.cancelling) {
        blocked.add(record.to);
        continue;
      }
      if (record.sendAt) {
        const due = Date.parse(record.sendAt);
        if (due > now) {
          wake = Math.min(wake, due);
          continue;
        }
      }
      if (blocked.has(record.to)) continue;
      if (this.writingTo.has(record.to)) {
        blocked.add(record.to);
        continue;
      }
      const wait = this.pacer.waitMs(record.to, now);
      if (wait.ms > 0) {
        wake = Math.min(wake, now + wait.ms);
        if (wait.all) break;
        blocked.add(record.to);
        continue;
      }
      this.pacer.started(record.to, now, this.pairedAt);
      this.start(record);
      inFlight++;
    }
    this.arm(wake);
  }

  private start(record: SendRecord): void {
    record.state = 'sending';
    this.writingTo.add(record.to);
    this.inFlight++;
    let writing = true;
    const written = (): void => {
      if (!writing) return;
      writing = false;
      this.writingTo.delete(record.to);
      // Not from inside the connection's call: the next send starts on a turn of its own.
      queueMicrotask(() => this.pump());
    };
    void this.execute(record, written).finally(() => {
      this.inFlight--;
      written();
      this.pump();
    });
  }

  private async execute(record: SendRecord, written: () => void): Promise<void> {
    const content = record.content;
    if (!content) {
      await this.failed(record, new Error('the send lost its text (the outbox index was damaged)'));
      return;
    }
    let sent: SentText;
    try {
      const typingMs = content.typingMs ?? this.pacer.typingMs(content.text);
      if (typingMs > 0) {
        await this.deps
          .connection(this.instanceId)
          ?.sendPresence('composing', record.to)
          .catch(() => undefined);
        await sleep(typingMs);
      }
      const connection = this.deps.connection(this.instanceId);
      if (!connection || this.stopped) throw new NotConnectedError(this.instanceId);
      sent = await connection.sendText(record.to, content.text, {
        ...(content.quoted ? { quoted: content.quoted } : {}),
        ...(content.mentions ? { mentions: content.mentions } : {}),
        ...(content.mentionAll ? { mentionAll: content.mentionAll } : {}),
        messageId: record.messageId,
        onWritten: written,
      });
    } catch (error) {
      await this.failed(record, error);
      return;
    }
    this.acknowledged(record, content.text, sent);
  }

  /**
   * WhatsApp took the message: the send is done, and a caller waiting for it hears so now. Its record
   * (`SendSent`, and `MessageSent` for the sinks) follows, in the next group append: a crash before it lands
   * leaves the send to go again with its id, which the recipient's phone drops, so the answer need not wait
   * for the disk. Recorded also while stopping (a clean shutdown, a hand-over), so the next owner has nothing
   * to send again; a node that lost the lease is refused by the fence.
   */
  private acknowledged(record: SendRecord, text: string, sent: SentText): void {
    const at = new Date().toISOString();
    const outcome = {
      timestamp: sent.timestamp,
      status: sent.status,
      ...(sent.mentions ? { mentions: sent.mentions } : {}),
    };
    record.unrecorded = true;
    this.finish(record.sendId, 'sent', at, outcome);
    if (this.pauseStreak > 0) {
      this.pauseStreak = 0;
      void this.deps.index.setPause(this.instanceId, null, 0).catch(() => undefined);
    }
    void Promise.all([
      this.record([
        { type: 'SendSent', data: { at, sendId: record.sendId, messageId: sent.id, ...outcome } },
      ]),
      this.recordTraffic(record.to, text, sent),
    ]).then(
      () => undefined,
      (error: unknown) => {
        if (this.closed || !record.unrecorded) return;
        // WhatsApp has it, the log does not say so: it goes again with its id (the phone drops the repeat).
        record.unrecorded = false;
        record.state = record.sendAt ? 'scheduled' : 'queued';
        record.finishedAt = null;
        record.outcome = null;
        this.requeue(record);
        this.deps.log(
          this.instanceId,
          'warn',
          'could not record a send WhatsApp took; it goes again with its id',
          {
            sendId: record.sendId,
            error: error instanceof Error ? error.message : String(error),
          },
        );
        this.arm(Date.now() + RETRY_MS);
      },
    );
  }

  /** Back in the queue at its place (request order). */
  private requeue(record: SendRecord): void {
    const at = this.queue.findIndex((other) => other.requestedAt > record.requestedAt);
    if (at < 0) this.queue.push(record);
    else this.queue.splice(at, 0, record);
  }

  /** MessageSent for the sinks, several sends in one append when they come together. */
  private recordTraffic(to: string, text: string, sent: SentText): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.traffic.push({ to, text, sent, resolve, reject });
      if (this.trafficNow === undefined) this.trafficNow = this.appendTraffic();
    });
  }

  private async appendTraffic(): Promise<void> {
    try {
      while (this.traffic.length > 0) {
        const batch = this.traffic.splice(0, MAX_BATCH);
        try {
          await this.deps.recordSent(this.instanceId, batch);
          for (const item of batch) item.resolve();
        } catch (error) {
          for (const item of batch) item.reject(error);
        }
      }
    } finally {
      this.trafficNow = undefined;
    }
  }

  private async failed(record: SendRecord, error: unknown): Promise<void> {
    if (this.closed) return;
    if (error instanceof NotConnectedError) {
      // Waits in the queue for the connection (the log has it: another owner would send it too).
      record.state = record.sendAt ? 'scheduled' : 'queued';
      this.noConnection = true;
      this.notify(record);
      return;
    }
    const verdict = classifySendError(error);
    if (verdict.kind === 'restricted') {
      // The pause is in force (synchronously) before anyone hears of the refused send.
      const restricting = this.restrict(verdict.restriction);
      if (verdict.restriction.retrySend) {
        record.state = record.sendAt ? 'scheduled' : 'queued';
        this.notify(record);
      } else
        await this.recordFailure(record, verdict.restriction.code, verdict.restriction.reason).catch(
          (recordError: unknown) => {
            record.state = 'queued';
            this.deps.log(
              this.instanceId,
              'warn',
              'could not record a refused send; it waits for the pause',
              {
                sendId: record.sendId,
                error: recordError instanceof Error ? recordError.message : String(recordError),
              },
            );
          },
        );
      await restricting;
      return;
    }
    if (record.state !== 'sending') return;
    // A failure that cannot be recorded leaves the send to go again with its id.
    await this.recordFailure(record, verdict.code, verdict.reason).catch((recordError: unknown) => {
      record.state = 'queued';
      this.deps.log(
        this.instanceId,
        'warn',
        'could not record the outcome of a send; it goes again with its id',
        {
          sendId: record.sendId,
          error: recordError instanceof Error ? recordError.message : String(recordError),
        },
      );
      this.arm(Date.now() + RETRY_MS);
    });
  }

  private async recordFailure(record: SendRecord, code: string, reason: string): Promise<void> {
    await this.record([
      {
        type: 'SendFailed',
        data: {
          at: new Date().toISOString(),
          sendId: record.sendId,
          messageId: record.messageId,
          code,
          reason,
        },
      },
    ]);
  }

  /** WhatsApp restricts the number: record it, pause, and resume by the timer. */
  private async restrict(restriction: Restriction): Promise<void> {
    if (this.pause && this.pause.until > Date.now()) return;
    this.pauseStreak++;
    this.deps.counted?.('restricted');
    const pauseMs = restrictionPauseMs(restriction, this.pauseStreak, this.deps.restrictionBackoff);
    const until = Date.now() + pauseMs;
    this.pause = { until, code: restriction.code, reason: restriction.reason };
    // Callers waiting for sends that now wait for the pause hear it (a 202) instead of waiting it out.
    for (const record of this.queue) if (isOpen(record.state)) this.notify(record);
    const verdict: SendingVerdictEventMap['SendingRestricted'] = {
      code: restriction.code,
      reason: restriction.reason,
      retryAfterMs: pauseMs,
    };
    this.deps.log(
      this.instanceId,
      'warn',
      `sending paused for ${Math.round(pauseMs / 1000)} s: ${restriction.reason}`,
      {
        code: restriction.code,
      },
    );
    await Promise.all([
      this.deps.recordVerdict(this.instanceId, [{ type: 'SendingRestricted', data: { ...verdict } }]),
      this.deps.index.setPause(
        this.instanceId,
        { until: new Date(until).toISOString(), code: restriction.code, reason: restriction.reason },
        this.pauseStreak,
      ),
    ]).catch((error: unknown) =>
      this.deps.log(this.instanceId, 'warn', 'could not record a sending restriction', {
        error: error instanceof Error ? error.message : String(error),
      }),
    );
    this.arm(until);
  }

  private resume(): void {
    this.pause = undefined;
    const resumed: SendingVerdictEventMap['SendingResumed'] = {};
    void Promise.all([
      this.deps.recordVerdict(this.instanceId, [{ type: 'SendingResumed', data: resumed }]),
      this.deps.index.setPause(this.instanceId, null, this.pauseStreak),
    ]).catch((error: unknown) =>
      this.deps.log(this.instanceId, 'warn', 'could not record that sending resumed', {
        error: error instanceof Error ? error.message : String(error),
      }),
    );
    this.deps.log(this.instanceId, 'info', 'sending resumed after a restriction', {});
  }

  private notify(record: SendRecord): void {
    const waiters = this.waiters.get(record.sendId);
    if (!waiters) return;
    const view = viewOf(record, this.waitingFor(record));
    for (const waiter of [...waiters]) waiter(view);
  }
}

function isOpen(state: SendPhase): boolean {
  return state === 'queued' || state === 'scheduled';
}

function isOpenOrSending(state: SendPhase): boolean {
  return isOpen(state) || state === 'sending';
}

function indexed(record: SendRecord): IndexedSend {
  return {
    sendId: record.sendId,
    messageId: record.messageId,
    to: record.to,
    // In flight, or acknowledged and not recorded yet, is not a state of the log: queued until it is.
    ...(record.state === 'sending' || record.unrecorded
      ? { state: record.sendAt ? 'scheduled' : 'queued', finishedAt: null, outcome: null }
      : { state: record.state, finishedAt: record.finishedAt, outcome: record.outcome }),
    requestedAt: record.requestedAt,
    sendAt: record.sendAt,
    idempotencyKey: record.idempotencyKey,
    requestHash: record.requestHash,
    content: record.content,
  };
}

function viewOf(
  record: Pick<
    SendRecord,
    'sendId' | 'messageId' | 'to' | 'state' | 'requestedAt' | 'sendAt' | 'finishedAt' | 'outcome'
  >,
  waitingFor: string | undefined,
): SendView {
  const outcome = record.outcome ?? {};
  return {
    sendId: record.sendId,
    messageId: record.messageId,
    to: record.to,
    state: record.state,
    requestedAt: record.requestedAt,
    sendAt: record.sendAt,
    finishedAt: record.finishedAt,
    ...(record.state === 'sent'
      ? {
          sent: {
            timestamp: String(outcome['timestamp'] ?? record.finishedAt),
            status: String(outcome['status'] ?? 'SERVER_ACK'),
            ...(Array.isArray(outcome['mentions']) ? { mentions: outcome['mentions'] as string[] } : {}),
          },
        }
      : {}),
    ...(record.state === 'failed'
      ? { failure: { code: String(outcome['code'] ?? 'error'), reason: String(outcome['reason'] ?? '') } }
      : {}),
    ...(waitingFor ? { waitingFor } : {}),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
