/**
 * Types of the instance machine: its context (everything the event log can rebuild), the events it
 * accepts (commands and connection signals, each stamped with `at` by the caller) and the messages it
 * sends to the WhatsApp connection actor.
 */
import type {
  AdvancedSettings,
  DisconnectReason,
  InstanceEventMap,
  ProxyView,
  SinkSettings,
} from '../../src/domain/events.ts';

/** The states the API reports. */
export const API_STATES = ['created', 'disconnected', 'connecting', 'qr', 'open', 'deleted'] as const;
export type ApiState = (typeof API_STATES)[number];

/**
 * Every state value the machine can be in. `backoff` and `session.connecting` are both API `connecting`:
 * `backoff` waits for the reconnect delay with no socket, `session.*` holds the one WhatsApp socket.
 */
export type InstanceStateValue =
  'created' | 'disconnected' | 'backoff' | { readonly session: 'connecting' | 'qr' | 'open' } | 'deleted';

/** Deployment settings, not facts: they come from configuration on every start and on every fold. */
export interface InstanceMachineConfig {
  /** QR codes shown per connection attempt before giving up with `qr_timeout` (QRCODE_MAX_COUNT). */
  readonly qrMaxCount?: number;
  /** An open connection that lived at least this long resets the backoff (ms, compared on `at`). */
  readonly stableOpenMs?: number;
}

export const DEFAULT_QR_MAX_COUNT = 5;
export const DEFAULT_STABLE_OPEN_MS = 60_000;

/** The machine starts from what InstanceCreated recorded (the runtime appends InstanceCreated). */
export type InstanceMachineInput = InstanceEventMap['InstanceCreated'] & InstanceMachineConfig;

export interface LastClose {
  readonly code: number | null;
  readonly reason: DisconnectReason;
  readonly at: string;
}

export interface InstanceContext {
  readonly instanceId: string;
  readonly name: string;
  readonly createdAt: string;
  readonly advancedSettings: AdvancedSettings;
  readonly sinks: SinkSettings;
  readonly proxy: ProxyView | null;
  /** A WhatsApp session is saved: the next connection logs in without a QR. */
  readonly paired: boolean;
  readonly jid: string | null;
  readonly pushName: string | null;
  readonly lid: string | null;
  /**
   * Number of ConnectionStarting events so far. The socket of a connection attempt carries it, so a
   * signal from an older socket (still in flight when a newer one started) is recognised and ignored.
   */
  readonly connectionSeq: number;
  /**
   * Backoff retries since the last connect, reconnect, restore or stable open: 0 on the first attempt,
   * 1 while waiting for the first retry. ConnectionStarting records it as `attempt` = reconnectAttempt + 1.
   */
  readonly reconnectAttempt: number;
  /** QR codes issued in the current attempt. */
  readonly qrCount: number;
  /** When the current connection opened; null while not open. */
  readonly openedAt: string | null;
  readonly lastClose: LastClose | null;
  readonly qrMaxCount: number;
  readonly stableOpenMs: number;
}

interface At {
  /** ISO time supplied by the caller: the machine never reads a clock. */
  readonly at: string;
}

/** Commands, from the API and the runtime. */
export type InstanceCommand =
  /** With `sinks`, also reconfigures where events go, in the same step (and when already connected). */
  | (At & { readonly type: 'connect'; readonly sinks?: Partial<SinkSettings> })
  | (At & { readonly type: 'reconnect' })
  | (At & { readonly type: 'disconnect' })
  | (At & { readonly type: 'logout' })
  | (At & { readonly type: 'delete' })
  /** Boot: a paired instance that was live (or shut down cleanly) connects again, without a QR. */
  | (At & { readonly type: 'restore' })
  /** The app stops: close the socket, remember to resume on the next boot. */
  | (At & { readonly type: 'shutdown' })
  | (At & { readonly type: 'requestPairingCode'; readonly phone: string })
  | (At & { readonly type: 'configureSinks'; readonly sinks: Partial<SinkSettings> })
  | (At & { readonly type: 'changeAdvancedSettings'; readonly settings: Partial<AdvancedSettings> })
  | (At & { readonly type: 'configureProxy'; readonly proxy: ProxyView })
  | (At & { readonly type: 'removeProxy' });

interface FromConnection {
  /** `connectionSeq` of the socket that sent it; absent = trust it is the current one. */
  readonly connectionSeq?: number;
}

/** Signals of the WhatsApp connection, routed back by the runtime. */
export type ConnectionSignalEvent =
  | (At & FromConnection & { readonly type: 'wa.qr'; readonly code: string; readonly expiresAt: string })
  | (At & FromConnection & { readonly type: 'wa.pairingCode'; readonly code: string; readonly phone: string })
  | (At &
      FromConnection & {
        readonly type: 'wa.opened';
        readonly jid: string;
        readonly pushName: string | null;
        readonly lid?: string | null;
      })
  | (At &
      FromConnection & {
        readonly type: 'wa.closed';
        readonly code: number | null;
        readonly message?: string;
      });

export type InstanceMachineEvent = InstanceCommand | ConnectionSignalEvent;

/** What the connection actor is started with (its `input`). No secrets: the adapter looks those up. */
export interface WhatsAppConnectionInput {
  readonly instanceId: string;
  readonly connectionSeq: number;
  readonly paired: boolean;
  readonly proxy: ProxyView | null;
  readonly settings: AdvancedSettings;
}

/** What the machine forwards to the live connection (`sendTo('whatsappConnection', …)`). */
export type WhatsAppConnectionCommand =
  | { readonly type: 'requestPairingCode'; readonly phone: string }
  | { readonly type: 'applySettings'; readonly settings: AdvancedSettings }
  | { readonly type: 'logout' };
