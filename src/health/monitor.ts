/**
 * The health monitor: watches every instance that is open on this node, measures each link of its path
 * (links.ts), records what changes (HealthDegraded / HealthRestored) and heals with a budget per cause.
 *
 * One sweep per `sweepMs` looks at every watched instance and starts what is due (a ping per ping
 * interval, a delivery probe per jittered probe interval); nothing waits on a probe, so a slow instance
 * never holds back the others. Cheap at 1,000 instances: two small stanzas per instance per interval and a
 * handful of numbers in memory.
 *
 * Never flaps: an instance becomes healthy again only when every link that failed is measured ok (a pong
 * twice in a row for the transport), and healing a cause more than `healBudget` times in `healWindowMs`
 * stops: the instance stays degraded with `needsAttention` until the cause goes away.
 */
import type { NewEvent } from '../store/port.ts';
import type { ConnectionProbe, DecryptionCounts } from '../whatsapp/port.ts';
import {
  judgeDecryption,
  judgeDelivery,
  judgePipeline,
  judgeTransport,
  judgeVerdicts,
  overallState,
  type Judgement,
} from './links.ts';
import {
  LINK_NAMES,
  type HealingAction,
  type HealthEventMap,
  type HealthSettings,
  type HealthState,
  type InstanceHealth,
  type LinkName,
  type LinkReport,
  type SendingRestriction,
} from './types.ts';

/** Where the monitor reads what it measures. */
export interface HealthSource {
  /** Instances open on this node. */
  openInstances(): Iterable<string>;
  probe(instanceId: string): ConnectionProbe | undefined;
  pipeline(instanceId: string): {
    readonly mailboxBusySince: number | undefined;
    readonly oldestAppendStartedAt: number | undefined;
    readonly lastAppendLatencyMs: number | undefined;
  };
  /**
   * How far each sink is behind for the instance, as this process works them (its webhook queue, the
   * brokers' subscriptions); sinks that are not behind are left out.
   */
  sinkLags(instanceId: string): ReadonlyArray<{
    readonly sink: string;
    readonly behind: number;
    readonly oldestUndeliveredAt: Date | undefined;
    readonly why: string | null;
  }>;
  /**
   * A restriction on the instance's sends in force on this node (the outbox's pause). The monitor hears
   * SendingRestricted as it is appended; this is how it learns of one recorded before a restart.
   */
  restriction?(
    instanceId: string,
  ): { readonly code: string; readonly reason: string; readonly until: number } | undefined;
}

/** What the monitor does about it. */
export interface HealthActions {
  /** Appends health events to the instance's stream. */
  record(instanceId: string, events: readonly NewEvent[]): Promise<void>;
  reconnect(instanceId: string): Promise<void>;
  restartActor(instanceId: string): Promise<void>;
  /** Reports what the monitor could not do (an append, a heal that threw). */
  warn(instanceId: string, message: string, error: unknown): void;
}

interface Track {
  judgement: Judgement;
  since: number;
}

interface DecryptSample {
  readonly at: number;
  readonly decrypted: number;
  readonly failed: number;
  readonly bySender: ReadonlyMap<string, number>;
}

interface Watch {
  readonly id: string;
  probe: ConnectionProbe | undefined;
  nextPingAt: number;
  nextProbeAt: number;
  pinging: boolean;
  probing: boolean;
  pingMeasured: boolean;
  lastRttMs: number | null;
  lastPongAt: number;
  pongMissing: boolean;
  pongStreak: number;
  probeMeasured: boolean;
  probeRttMs: number | null;
  lastProbeOkAt: number;
  probeMisses: number;
  samples: DecryptSample[];
  links: Record<LinkName, Track>;
  checkedAt: number | null;
}

/** What survives a reconnect: the recorded verdict, the heal budget, the restriction. */
interface Memory {
  recorded: HealthState;
  recordedReason: string;
  recordedSince: number;
  needsAttention: boolean;
  heals: Map<LinkName, number[]>;
  exhaustedNoted: Set<LinkName>;
  restriction: SendingRestriction | undefined;
  /** A delivery failure is being healed: probe as soon as the instance is open again. */
  probeSoon: boolean;
  /** The connection the last reconnect was asked for (a new one is the reconnect's figures). */
  reconnected: ConnectionProbe | undefined;
  /** The reason recorded with the last HealthDegraded, in words (for HealthRestored). */
  recordedText: string;
}

/** A reconnect that has not replaced the connection after this long is asked for again. */
const RECONNECT_GRACE_MS = 60_000;

export interface HealthCounts {
  readonly healthy: number;
  readonly degraded: number;
  readonly down: number;
  readonly needsAttention: number;
}

export class HealthMonitor {
  private readonly watches = new Map<string, Watch>();
  private readonly memory = new Map<string, Memory>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(
    private readonly settings: HealthSettings,
    private readonly source: HealthSource,
    private readonly actions: HealthActions,
    options: { now?: () => number; random?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  start(): void {
    if (!this.settings.enabled || this.timer) return;
    this.timer = setInterval(() => this.sweep(), this.settings.sweepMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** WhatsApp refused sends (SendingRestricted) or lifted the refusal (SendingResumed). */
  observe(instanceId: string, type: string, data: Readonly<Record<string, unknown>>): void {
    if (type !== 'SendingRestricted' && type !== 'SendingResumed') return;
    const memory = this.memoryOf(instanceId);
    if (type === 'SendingResumed') memory.restriction = undefined;
    else
      memory.restriction = {
        code: String(data['code'] ?? 'unknown'),
        reason: String(data['reason'] ?? ''),
        ...(typeof data['retryAfterMs'] === 'number' ? { retryAfterMs: data['retryAfterMs'] } : {}),
        at: typeof data['at'] === 'string' ? data['at'] : new Date(this.now()).toISOString(),
      };
    const watch = this.watches.get(instanceId);
    if (watch) this.evaluate(watch);
  }

  /** The instance is gone (deleted): forget everything about it. */
  forget(instanceId: string): void {
    this.watches.delete(instanceId);
    this.memory.delete(instanceId);
  }

  /**
   * The instance's health. `apiState` is its connection state: an instance that is not open is `down`
   * with that as the reason (it hears nothing).
   */
  health(instanceId: string, apiState: string): InstanceHealth {
    const memory = this.memory.get(instanceId);
    const watch = this.watches.get(instanceId);
    const now = this.now();
    if (apiState !== 'open' || !watch) {
      const reason =
        apiState === 'open'
          ? this.settings.enabled
            ? 'not measured yet'
            : 'health checks are off (HEALTH_ENABLED=false)'
          : `not connected to WhatsApp (state: ${apiState})`;
      const state: HealthState = apiState === 'open' ? (memory?.recorded ?? 'healthy') : 'down';
      return {
        state,
        since: new Date(memory?.recordedSince ?? now).toISOString(),
        reason,
        needsAttention: memory?.needsAttention ?? false,
        links: LINK_NAMES.map((link) => ({
          link,
          state: 'unknown',
          figure: null,
          unit: null,
          since: new Date(now).toISOString(),
          reason: null,
        })),
        checkedAt: null,
      };
    }
    const links: LinkReport[] = LINK_NAMES.map((link) => {
      const track = watch.links[link];
      return {
        link,
        state: track.judgement.state,
        figure: track.judgement.figure,
        unit: track.judgement.unit,
        since: new Date(track.since).toISOString(),
        reason: track.judgement.reason,
      };
    });
    const state = overallState(links.map((l) => l.state));
    const reason = reasonOf(links) ?? this.unmeasured(watch);
    return {
      state,
      since: new Date(
        state === memory?.recorded ? memory.recordedSince : (watch.checkedAt ?? now),
      ).toISOString(),
      reason,
      needsAttention: memory?.needsAttention ?? false,
      links,
      checkedAt: watch.checkedAt === null ? null : new Date(watch.checkedAt).toISOString(),
    };
  }

  /** Healthy so far, but the links that prove it were not measured yet: say so. */
  private unmeasured(watch: Watch): string | null {
    if (!watch.probe) return 'this connection cannot be probed: transport and delivery are not measured';
    const pending = [
      ...(watch.links.transport.judgement.state === 'unknown' ? ['transport'] : []),
      ...(this.settings.probeIntervalMs > 0 && watch.links.delivery.judgement.state === 'unknown'
        ? ['delivery']
        : []),
    ];
    return pending.length > 0 ? `not measured yet: ${pending.join(', ')}` : null;
  }

  /** Counts per state over the instances watched here (open on this node). */
  counts(): HealthCounts {
    let healthy = 0;
    let degraded = 0;
    let down = 0;
    let needsAttention = 0;
    for (const watch of this.watches.values()) {
      const state = overallState(LINK_NAMES.map((l) => watch.links[l].judgement.state));
      if (state === 'healthy') healthy++;
      else if (state === 'degraded') degraded++;
      else down++;
      if (this.memory.get(watch.id)?.needsAttention) needsAttention++;
    }
    return { healthy, degraded, down, needsAttention };
  }

  /** For the metrics: every watched instance's links. */
  watched(): Array<{ instanceId: string; health: InstanceHealth }> {
    return [...this.watches.keys()].map((id) => ({ instanceId: id, health: this.health(id, 'open') }));
  }

  // ------------------------------------------------------------------ the sweep

  /** One pass over the open instances (the timer calls it; tests may too). */
  sweep(): void {
    const now = this.now();
    const open = new Set(this.source.openInstances());
    for (const id of this.watches.keys()) if (!open.has(id)) this.watches.delete(id);
    for (const id of open) {
      const probe = this.source.probe(id);
      const known = this.watches.get(id);
      const fresh = !known || known.probe !== probe;
      const watch = fresh ? this.newWatch(id, probe, now) : known;
      if (fresh) this.watches.set(id, watch);
      // A restriction heard before this watch began (or read back from the outbox) is judged at once.
      if (this.readRestrictionBack(id, now) || (fresh && this.memoryOf(id).restriction)) this.evaluate(watch);
      if (!watch.pinging && now >= watch.nextPingAt) this.ping(watch);
      if (!watch.probing && this.settings.probeIntervalMs > 0 && now >= watch.nextProbeAt)
        this.probeDelivery(watch);
    }
  }

  /** Whether a restriction the outbox holds (from before a restart) was new to the monitor. */
  private readRestrictionBack(id: string, now: number): boolean {
    const memory = this.memoryOf(id);
    if (memory.restriction) return false;
    const held = this.source.restriction?.(id);
    if (!held) return false;
    memory.restriction = {
      code: held.code,
      reason: held.reason,
      retryAfterMs: Math.max(0, held.until - now),
      at: new Date(now).toISOString(),
    };
    return true;
  }

  private newWatch(id: string, probe: ConnectionProbe | undefined, now: number): Watch {
    const memory = this.memoryOf(id);
    const unknownTrack = (): Track => ({
      judgement: { state: 'unknown', figure: null, unit: null, reason: null },
      since: now,
    });
    const links = Object.fromEntries(LINK_NAMES.map((l) => [l, unknownTrack()])) as Record<LinkName, Track>;
    // Spread the first checks over an interval so instances opened together do not probe together.
    const firstPing = now + Math.floor(this.random() * Math.min(this.settings.pingIntervalMs, 5_000));
    // The first probe soon after the connection opened (within two pings), so that an instance is not
    // shown healthy on its transport alone for a whole probe interval.
    const firstProbe = memory.probeSoon
      ? now + 1_000
      : now +
        Math.floor(this.random() * Math.min(this.settings.probeIntervalMs, 2 * this.settings.pingIntervalMs));
    return {
      id,
      probe,
      nextPingAt: firstPing,
      nextProbeAt: firstProbe,
      pinging: false,
      probing: false,
      pingMeasured: false,
      lastRttMs: null,
      lastPongAt: now,
      pongMissing: false,
      pongStreak: 0,
      probeMeasured: false,
      probeRttMs: null,
      lastProbeOkAt: now,
      probeMisses: 0,
      samples: [],
      links,
      checkedAt: null,
    };
  }

  private ping(watch: Watch): void {
    watch.nextPingAt = this.now() + this.settings.pingIntervalMs;
    const probe = watch.probe;
    if (!probe) {
      this.evaluate(watch);
      return;
    }
    watch.pinging = true;
    probe
      .ping(this.settings.pingTimeoutMs)
      .then(
        (rtt) => {
          watch.pingMeasured = true;
          watch.lastRttMs = rtt;
          watch.lastPongAt = this.now();
          watch.pongStreak += 1;
          // One pong after a silence is not yet a working transport: two in a row are.
          if (watch.pongMissing && watch.pongStreak >= 2) watch.pongMissing = false;
          else if (watch.pongMissing)
            watch.nextPingAt = this.now() + Math.min(5_000, this.settings.pingIntervalMs);
        },
        () => {
          watch.pingMeasured = true;
          watch.pongMissing = true;
          watch.pongStreak = 0;
        },
      )
      .finally(() => {
        watch.pinging = false;
        if (this.watches.get(watch.id) === watch) this.evaluate(watch);
      });
  }

  private probeDelivery(watch: Watch): void {
    const probe = watch.probe;
    const jitter = 0.8 + 0.4 * this.random();
    watch.nextProbeAt = this.now() + Math.round(this.settings.probeIntervalMs * jitter);
    if (!probe) return;
    watch.probing = true;
    probe
      .probeDelivery(this.settings.probeTimeoutMs)
      .then(
        (rtt) => {
          watch.probeMeasured = true;
          watch.probeRttMs = rtt;
          watch.lastProbeOkAt = this.now();
          watch.probeMisses = 0;
          this.memoryOf(watch.id).probeSoon = false;
        },
        () => {
          watch.probeMeasured = true;
          watch.probeMisses += 1;
          // A single miss may be load: ask again at once rather than a whole interval later.
          if (watch.probeMisses === 1) watch.nextProbeAt = this.now();
        },
      )
      .finally(() => {
        watch.probing = false;
        if (this.watches.get(watch.id) === watch) this.evaluate(watch);
      });
  }

  // ------------------------------------------------------------------ judging, recording, healing

  private evaluate(watch: Watch): void {
    const now = this.now();
    const memory = this.memoryOf(watch.id);
    const s = this.settings;
    const judgements: Record<LinkName, Judgement> = {
      transport: watch.probe
        ? judgeTransport({
            measured: watch.pingMeasured,
            lastRttMs: watch.lastRttMs,
            missing: watch.pongMissing,
            silentForMs: now - watch.lastPongAt,
          })
        : { state: 'unknown', figure: null, unit: 'ms', reason: 'this connection cannot be probed' },
      delivery:
        watch.probe && s.probeIntervalMs > 0
          ? judgeDelivery({
              measured: watch.probeMeasured,
              lastRttMs: watch.probeRttMs,
              misses: watch.probeMisses,
              silentForMs: now - watch.lastProbeOkAt,
            })
          : { state: 'unknown', figure: null, unit: 'ms', reason: null },
      decryption: this.decryption(watch, now),
      pipeline: this.pipeline(watch.id, now),
      verdicts: judgeVerdicts(memory.restriction, now),
    };
    for (const link of LINK_NAMES) {
      const track = watch.links[link];
      const next = judgements[link];
      if (track.judgement.state !== next.state) track.since = now;
      track.judgement = next;
    }
    watch.checkedAt = now;
    this.record(watch, memory, now);
    this.heal(watch, memory, now);
  }

  private decryption(watch: Watch, now: number): Judgement {
    const counts: DecryptionCounts | undefined = watch.probe?.decryption();
    if (!counts) return { state: 'unknown', figure: null, unit: 'share', reason: null };
    const last = watch.samples.at(-1);
    watch.samples.push({
      at: now,
      decrypted: counts.decrypted,
      failed: counts.failed,
      // The per-sender map is copied only when a failure was added since the last sample.
      bySender: last && last.failed === counts.failed ? last.bySender : new Map(counts.failedBySender),
    });
    const horizon = now - this.settings.decryptWindowMs;
    while (watch.samples.length > 1 && watch.samples[1]!.at <= horizon) watch.samples.shift();
    const first = watch.samples[0]!;
    const base = first.at <= horizon || watch.samples.length > 1 ? first : { decrypted: 0, failed: 0 };
    const failed = counts.failed - (first === base ? first.failed : 0);
    const decrypted = counts.decrypted - (first === base ? first.decrypted : 0);
    return judgeDecryption({
      failed: Math.max(0, failed),
      total: Math.max(0, failed) + Math.max(0, decrypted),
      windowMs: this.settings.decryptWindowMs,
      minFailures: this.settings.decryptMinFailures,
      maxShare: this.settings.decryptMaxShare,
    });
  }

  /** The sender with most failures in the window, when it has most of them. */
  private concentratedSender(watch: Watch): { sender: string; failures: number } | undefined {
    const first = watch.samples[0];
    const last = watch.samples.at(-1);
    if (!first || !last) return undefined;
    let best: { sender: string; failures: number } | undefined;
    let total = 0;
    for (const [sender, count] of last.bySender) {
      const failures = count - (first === last ? 0 : (first.bySender.get(sender) ?? 0));
      total += failures;
      if (failures > 0 && (!best || failures > best.failures)) best = { sender, failures };
    }
    return best && best.failures >= this.settings.decryptMinFailures && best.failures >= 0.6 * total
      ? best
      : undefined;
  }

  private pipeline(instanceId: string, now: number): Judgement {
    const figures = this.source.pipeline(instanceId);
    const lags = this.source.sinkLags(instanceId);
    return judgePipeline({
      mailboxBusyForMs: figures.mailboxBusySince === undefined ? undefined : now - figures.mailboxBusySince,
      oldestAppendMs:
        figures.oldestAppendStartedAt === undefined ? undefined : now - figures.oldestAppendStartedAt,
      lastAppendLatencyMs: figures.lastAppendLatencyMs,
      sinkLags: lags.flatMap((lag) =>
        lag.oldestUndeliveredAt
          ? [
              {
                sink: lag.sink,
                behind: lag.behind,
                oldestMs: now - lag.oldestUndeliveredAt.getTime(),
                why: lag.why,
              },
            ]
          : [],
      ),
      stuckMs: this.settings.pipelineStuckMs,
      sinkLagMs: this.settings.sinkLagMs,
    });
  }

  private record(watch: Watch, memory: Memory, now: number): void {
    const links = LINK_NAMES.map((link) => ({ link, ...watch.links[link].judgement }));
    const state = overallState(links.map((l) => l.state));
    const failing = links.filter((l) => l.state === 'degraded' || l.state === 'down');
    const reason = failing.map((l) => l.reason ?? l.link).join('; ');
    if (state === 'healthy') {
      if (memory.recorded === 'healthy') return;
      // Healthy again only when every link that failed has been measured ok since.
      const stillUnmeasured = memory.recordedReason
        ? links.some((l) => l.state === 'unknown' && memory.recordedReason.includes(`[${l.link}]`))
        : false;
      if (stillUnmeasured) return;
      const event: HealthEventMap['HealthRestored'] = {
        at: new Date(now).toISOString(),
        degradedForMs: now - memory.recordedSince,
        previousReason: memory.recordedText || stripTags(memory.recordedReason),
      };
      memory.recorded = 'healthy';
      memory.recordedReason = '';
      memory.recordedText = '';
      memory.recordedSince = now;
      memory.needsAttention = false;
      memory.exhaustedNoted.clear();
      this.append(watch.id, [{ type: 'HealthRestored', data: { ...event } }]);
      return;
    }
    // Recorded again only when the verdict or the set of failing links changes, not for every new figure.
    const tagged = failing.map((l) => `[${l.link}]${l.state}`).join(' ');
    if (memory.recorded === state && memory.recordedReason === tagged) return;
    // A doubt (one unanswered probe) alone is not recorded: the second probe decides.
    if (failing.length === 1 && failing[0]!.link === 'delivery' && failing[0]!.state === 'degraded') return;
    if (memory.recorded === 'healthy') memory.recordedSince = now;
    memory.recorded = state;
    memory.recordedReason = tagged;
    memory.recordedText = reason;
    this.appendDegraded(watch.id, state, reason, failing, memory.needsAttention, now);
  }

  private appendDegraded(
    instanceId: string,
    state: 'degraded' | 'down',
    reason: string,
    failing: ReadonlyArray<{ link: LinkName; state: Judgement['state']; reason: string | null }>,
    needsAttention: boolean,
    now: number,
  ): void {
    const event: HealthEventMap['HealthDegraded'] = {
      at: new Date(now).toISOString(),
      state,
      reason,
      links: failing.map((l) => ({ link: l.link, state: l.state, reason: l.reason ?? l.link })),
      needsAttention,
    };
    this.append(instanceId, [{ type: 'HealthDegraded', data: { ...event } }]);
  }

  private heal(watch: Watch, memory: Memory, now: number): void {
    const links = watch.links;
    if (links.transport.judgement.state === 'down')
      return this.act(watch, memory, now, 'transport', 'reconnect', links.transport.judgement.reason);
    if (links.delivery.judgement.state === 'down') {
      memory.probeSoon = true;
      return this.act(watch, memory, now, 'delivery', 'reconnect', links.delivery.judgement.reason);
    }
    if (links.pipeline.judgement.state === 'down')
      return this.act(watch, memory, now, 'pipeline', 'restartActor', links.pipeline.judgement.reason);
    if (links.decryption.judgement.state === 'degraded') {
      const culprit = this.concentratedSender(watch);
      if (culprit)
        this.act(
          watch,
          memory,
          now,
          'decryption',
          'resetSession',
          links.decryption.judgement.reason,
          culprit.sender,
        );
    }
  }

  private act(
    watch: Watch,
    memory: Memory,
    now: number,
    link: LinkName,
    action: HealingAction,
    reason: string | null,
    contact?: string,
  ): void {
    const budget = this.settings.healBudget;
    const recent = (memory.heals.get(link) ?? []).filter((t) => now - t < this.settings.healWindowMs);
    memory.heals.set(link, recent);
    const base = { at: new Date(now).toISOString(), action, link, reason: reason ?? link, budget };
    if (recent.length >= budget) {
      if (memory.exhaustedNoted.has(link)) return;
      memory.exhaustedNoted.add(link);
      memory.needsAttention = true;
      const event: HealthEventMap['HealingAttempted'] = { ...base, attempt: recent.length, exhausted: true };
      this.append(watch.id, [{ type: 'HealingAttempted', data: { ...event } }]);
      const state = overallState(LINK_NAMES.map((l) => watch.links[l].judgement.state));
      if (state !== 'healthy') {
        const failing = LINK_NAMES.map((l) => ({ link: l, ...watch.links[l].judgement })).filter(
          (l) => l.state === 'degraded' || l.state === 'down',
        );
        this.appendDegraded(watch.id, state, reasonOf(failing) ?? state, failing, true, now);
      }
      return;
    }
    // A cause is healed once per measurement: the next try waits for fresh figures after this one. After
    // a reconnect, figures of the new connection (unless the reconnect did not happen within a minute);
    // after a session reset, a whole decryption window (the failures before it stay in it until then).
    const last = recent.at(-1);
    if (last !== undefined) {
      if (action === 'reconnect' && memory.reconnected === watch.probe && now - last < RECONNECT_GRACE_MS)
        return;
      const gap = link === 'decryption' ? this.settings.decryptWindowMs : this.settings.pipelineStuckMs;
      if (action !== 'reconnect' && now - last < gap) return;
    }
    if (action === 'reconnect') memory.reconnected = watch.probe;
    recent.push(now);
    const event: HealthEventMap['HealingAttempted'] = {
      ...base,
      attempt: recent.length,
      exhausted: false,
      ...(contact ? { contact } : {}),
    };
    this.append(watch.id, [{ type: 'HealingAttempted', data: { ...event } }]);
    const done =
      action === 'reconnect'
        ? this.actions.reconnect(watch.id)
        : action === 'restartActor'
          ? this.actions.restartActor(watch.id)
          : (watch.probe?.resetSession(contact!) ?? Promise.resolve());
    done.catch((error: unknown) => this.actions.warn(watch.id, `healing (${action}) failed`, error));
  }

  private append(instanceId: string, events: NewEvent[]): void {
    this.actions
      .record(instanceId, events)
      .catch((error: unknown) => this.actions.warn(instanceId, 'could not record a health event', error));
  }

  private memoryOf(instanceId: string): Memory {
    let memory = this.memory.get(instanceId);
    if (!memory)
      this.memory.set(
        instanceId,
        (memory = {
          recorded: 'healthy',
          recordedReason: '',
          recordedSince: this.now(),
          needsAttention: false,
          heals: new Map(),
          exhaustedNoted: new Set(),
          restriction: undefined,
          probeSoon: false,
          reconnected: undefined,
          recordedText: '',
        }),
      );
    return memory;
  }
}

function reasonOf(
  links: ReadonlyArray<{ state: string; reason: string | null; link: string }>,
): string | null {
  const failing = links.filter((l) => l.state === 'degraded' || l.state === 'down');
  return failing.length === 0 ? null : failing.map((l) => l.reason ?? l.link).join('; ');
}

function stripTags(tagged: string): string {
  return tagged.replace(/\[(\w+)\](\w+)/g, '$1 $2');
}
