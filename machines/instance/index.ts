export { instanceMachine, inertWhatsAppConnection, type InstanceMachine } from './machine.ts';
export { apiStateOf, apiStateOfValue, isLive } from './api-state.ts';
export { decide, restoreSnapshot, foldedOf, inputOf, type Decided, type InstanceSnapshot } from './decide.ts';
export {
  evolveInstance,
  foldInstance,
  evolveContext,
  evolveValue,
  initialContext,
  type FoldableEvent,
  type FoldedInstance,
} from './evolve.ts';
export {
  defaultReconnectDelay,
  exponentialBackoffMs,
  reconnectDelayWithin,
  type BackoffBounds,
  RECONNECT_BASE_MS,
  RECONNECT_CAP_MS,
} from './backoff.ts';
export {
  API_STATES,
  DEFAULT_QR_MAX_COUNT,
  DEFAULT_STABLE_OPEN_MS,
  type ApiState,
  type ConnectionSignalEvent,
  type InstanceCommand,
  type InstanceContext,
  type InstanceMachineConfig,
  type InstanceMachineEvent,
  type InstanceMachineInput,
  type InstanceStateValue,
  type LastClose,
  type WhatsAppConnectionCommand,
  type WhatsAppConnectionInput,
} from './types.ts';
