/**
 * The vocabulary of instance health: links, their reports, the instance's verdict, the settings, and the
 * domain events health records (HealthDegraded, HealthRestored, HealingAttempted).
 */

/** One link of the path a message takes; each is measured on its own. */
export type LinkName = 'transport' | 'delivery' | 'decryption' | 'pipeline' | 'verdicts';
export const LINK_NAMES: readonly LinkName[] = [
  'transport',
  'delivery',
  'decryption',
  'pipeline',
  'verdicts',
];

/** `unknown`: not measured yet (just opened, or the connection cannot be probed). */
export type LinkState = 'ok' | 'degraded' | 'down' | 'unknown';

export type HealthState = 'healthy' | 'degraded' | 'down';

export interface LinkReport {
  readonly link: LinkName;
  readonly state: LinkState;
  /** The link's figure (see `unit`); null when not measured. */
  readonly figure: number | null;
  readonly unit: 'ms' | 'share' | 'events' | null;
  /** Since when the link is in this state (ISO). */
  readonly since: string;
  /** In words, when the link is not ok ("no pong for 45 s"). */
  readonly reason: string | null;
}

export interface InstanceHealth {
  /** For an instance that is not open: `down`, with the reason. */
  readonly state: HealthState;
  readonly since: string;
  /** The reasons of the links that are not ok, joined; null when healthy. */
  readonly reason: string | null;
  /** Healing used its budget without fixing the cause: an operator must look. */
  readonly needsAttention: boolean;
  readonly links: readonly LinkReport[];
  /** When the links were last evaluated (ISO); null for an instance not watched here. */
  readonly checkedAt: string | null;
}

export interface HealthSettings {
  /** HEALTH_ENABLED: watch open instances at all. */
  readonly enabled: boolean;
  /** HEALTH_PING_INTERVAL_MS: one timed keepalive ping per interval (Baileys' keepalive is 30 s). */
  readonly pingIntervalMs: number;
  /** HEALTH_PING_TIMEOUT_MS: a ping unanswered after this is a missed pong. */
  readonly pingTimeoutMs: number;
  /** HEALTH_PROBE_INTERVAL_MS: the delivery probe's period (jittered ±20 %); 0 turns the probe off. */
  readonly probeIntervalMs: number;
  /** HEALTH_PROBE_TIMEOUT_MS: an unanswered probe after this is a miss (a second one confirms it). */
  readonly probeTimeoutMs: number;
  /** HEALTH_DECRYPT_WINDOW_MS: the sliding window of the decryption share. */
  readonly decryptWindowMs: number;
  /** Failures in the window before the share counts (a single failure is noise). */
  readonly decryptMinFailures: number;
  /** Share of failures in the window that degrades the link. */
  readonly decryptMaxShare: number;
  /** HEALTH_PIPELINE_STUCK_MS: a mailbox job or an append older than this is stuck. */
  readonly pipelineStuckMs: number;
  /** HEALTH_SINK_LAG_MS: the oldest undelivered webhook event older than this degrades the pipeline. */
  readonly sinkLagMs: number;
  /** HEALTH_HEAL_BUDGET: healing actions per cause in `healWindowMs` before the instance needs attention. */
  readonly healBudget: number;
  /** HEALTH_HEAL_WINDOW_MS */
  readonly healWindowMs: number;
  /** How often the monitor looks at every watched instance (what is due runs). */
  readonly sweepMs: number;
}

export const DEFAULT_HEALTH_SETTINGS: HealthSettings = {
  enabled: true,
  pingIntervalMs: 30_000,
  pingTimeoutMs: 10_000,
  probeIntervalMs: 180_000,
  probeTimeoutMs: 30_000,
  decryptWindowMs: 300_000,
  decryptMinFailures: 3,
  decryptMaxShare: 0.2,
  pipelineStuckMs: 60_000,
  sinkLagMs: 120_000,
  healBudget: 3,
  healWindowMs: 1_800_000,
  sweepMs: 1_000,
};

/** What healing does, per cause. */
export type HealingAction = 'reconnect' | 'resetSession' | 'restartActor';

interface At {
  readonly at: string;
}

/** Health events, recorded on the instance's `instance-<id>` stream (the machine's fold ignores them). */
export interface HealthEventMap {
  /** The instance left `healthy` (or its reasons changed while not healthy). */
  HealthDegraded: At & {
    readonly state: 'degraded' | 'down';
    readonly reason: string;
    readonly links: ReadonlyArray<{
      readonly link: LinkName;
      readonly state: LinkState;
      readonly reason: string;
    }>;
    readonly needsAttention: boolean;
  };
  /** Every link is ok again. */
  HealthRestored: At & { readonly degradedForMs: number; readonly previousReason: string };
  /** A healing action was taken for a cause (or, with `exhausted`, refused: the budget is spent). */
  HealingAttempted: At & {
    readonly action: HealingAction;
    readonly link: LinkName;
    readonly reason: string;
    /** The attempt's number within the budget window. */
    readonly attempt: number;
    readonly budget: number;
    readonly exhausted: boolean;
    /** resetSession: the contact whose session was reset. */
    readonly contact?: string;
  };
}

export type HealthEventType = keyof HealthEventMap;
export const HEALTH_EVENT_TYPES: readonly HealthEventType[] = [
  'HealthDegraded',
  'HealthRestored',
  'HealingAttempted',
];

/** WhatsApp's refusals of sends, recorded by the outbox (SendingRestricted / SendingResumed). */
export interface SendingRestriction {
  readonly code: string;
  readonly reason: string;
  readonly retryAfterMs?: number;
  readonly at: string;
}
