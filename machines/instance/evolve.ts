/**
 * The fold: how each recorded instance event changes the machine's state value and context.
 * The machine updates its context with `evolveContext` over the events it emits, so running the machine
 * and folding its events give the same context by construction; the state value is folded here
 * independently and checked against the machine by the model test.
 */
import type { InstanceEvent, InstanceEventMap } from '../../src/domain/events.ts';
import { DEFAULT_ADVANCED_SETTINGS, pickAdvancedSettings } from '../../src/domain/events.ts';
import { apiStateOfValue } from './api-state.ts';
import {
  type ApiState,
  DEFAULT_QR_MAX_COUNT,
  DEFAULT_STABLE_OPEN_MS,
  type InstanceContext,
  type InstanceMachineConfig,
  type InstanceStateValue,
} from './types.ts';

/** A stored event as the fold needs it: InstanceEvent, or a RecordedEvent of the event store. */
export interface FoldableEvent {
  readonly type: string;
  readonly data: unknown;
}

export interface FoldedInstance {
  readonly value: InstanceStateValue;
  /** apiStateOfValue(value), for convenience. */
  readonly apiState: ApiState;
  readonly context: InstanceContext;
}

export function initialContext(
  created: InstanceEventMap['InstanceCreated'],
  config: InstanceMachineConfig = {},
): InstanceContext {
  return {
    instanceId: created.instanceId,
    name: created.name,
    createdAt: created.at,
    advancedSettings: { ...DEFAULT_ADVANCED_SETTINGS, ...pickAdvancedSettings(created.advancedSettings) },
    sinks: created.sinks,
    proxy: created.proxy,
    paired: false,
    jid: null,
    pushName: null,
    lid: null,
    connectionSeq: 0,
    reconnectAttempt: 0,
    qrCount: 0,
    openedAt: null,
    lastClose: null,
    qrMaxCount: config.qrMaxCount ?? DEFAULT_QR_MAX_COUNT,
    stableOpenMs: config.stableOpenMs ?? DEFAULT_STABLE_OPEN_MS,
  };
}

export function evolveContext(context: InstanceContext, event: InstanceEvent): InstanceContext {
  switch (event.type) {
    case 'EventSinksConfigured':
      return { ...context, sinks: event.data.sinks };
    case 'AdvancedSettingsChanged':
      return {
        ...context,
        advancedSettings: { ...DEFAULT_ADVANCED_SETTINGS, ...pickAdvancedSettings(event.data.settings) },
      };
    case 'ProxyConfigured':
      return { ...context, proxy: event.data.proxy };
    case 'ProxyRemoved':
      return { ...context, proxy: null };
    case 'ConnectionStarting':
      return {
        ...context,
        connectionSeq: context.connectionSeq + 1,
        reconnectAttempt: Math.max(event.data.attempt - 1, 0),
        qrCount: 0,
        openedAt: null,
      };
    case 'QrCodeIssued':
      return { ...context, qrCount: event.data.count };
    case 'PairingCodeIssued':
      return context;
    case 'InstanceOpened':
      return {
        ...context,
        paired: true,
        jid: event.data.jid,
        pushName: event.data.pushName,
        lid: event.data.lid ?? null,
        openedAt: event.data.at,
      };
    case 'ConnectionClosed':
      return {
        ...context,
        openedAt: null,
        lastClose: { code: event.data.code, reason: event.data.reason, at: event.data.at },
      };
    case 'SessionRemoved':
      return { ...context, paired: false, jid: null, pushName: null, lid: null, openedAt: null };
    case 'InstanceCreated':
    case 'InstanceDeleted':
      return context;
  }
}

const CONNECTING = { session: 'connecting' } as const;

export function evolveValue(value: InstanceStateValue, event: InstanceEvent): InstanceStateValue {
  if (value === 'deleted') return value;
  switch (event.type) {
    case 'ConnectionStarting':
      // A backoff retry is recorded when the connection closes; the socket opens after the delay.
      return event.data.trigger === 'retry' ? 'backoff' : CONNECTING;
    case 'QrCodeIssued':
      return { session: 'qr' };
    case 'InstanceOpened':
      return { session: 'open' };
    case 'ConnectionClosed':
      if (!event.data.willReconnect) return 'disconnected';
      return event.data.retryInMs === 0 ? CONNECTING : 'backoff';
    case 'InstanceDeleted':
      return 'deleted';
    default:
      // Configuration, PairingCodeIssued (the state stays where it is: the QR state begins with a QR),
      // SessionRemoved (always recorded with the close that explains the state).
      return value;
  }
}

const INSTANCE_EVENT_TYPES: ReadonlySet<string> = new Set<InstanceEvent['type']>([
  'InstanceCreated',
  'EventSinksConfigured',
  'AdvancedSettingsChanged',
  'ProxyConfigured',
  'ProxyRemoved',
  'ConnectionStarting',
  'QrCodeIssued',
  'PairingCodeIssued',
  'InstanceOpened',
  'ConnectionClosed',
  'SessionRemoved',
  'InstanceDeleted',
]);

function isInstanceEvent(event: FoldableEvent): event is InstanceEvent {
  return INSTANCE_EVENT_TYPES.has(event.type);
}

/**
 * One step of the fold. `state` is undefined before the first event, which must be InstanceCreated.
 * Event types this fold does not know (added later, other streams) leave the state as it is.
 */
export function evolveInstance(
  state: FoldedInstance | undefined,
  event: FoldableEvent,
  config: InstanceMachineConfig = {},
): FoldedInstance {
  if (state === undefined) {
    if (event.type !== 'InstanceCreated') {
      throw new Error(`an instance stream starts with InstanceCreated, not ${event.type}`);
    }
    const created = event.data as InstanceEventMap['InstanceCreated'];
    return { value: 'created', apiState: 'created', context: initialContext(created, config) };
  }
  if (!isInstanceEvent(event) || state.value === 'deleted') return state;
  const value = evolveValue(state.value, event);
  return { value, apiState: apiStateOfValue(value), context: evolveContext(state.context, event) };
}

/** Folds a whole instance stream (oldest first) into the machine's state value and context. */
export function foldInstance(
  events: Iterable<FoldableEvent>,
  config: InstanceMachineConfig = {},
): FoldedInstance {
  let state: FoldedInstance | undefined;
  for (const event of events) state = evolveInstance(state, event, config);
  if (state === undefined) throw new Error('cannot fold an empty instance stream');
  return state;
}
