/** Maps machine states to the six states the API reports. */
import type { StateValue } from 'xstate';
import type { ApiState } from './types.ts';

const SESSION_STATES: Readonly<Record<string, ApiState>> = {
  connecting: 'connecting',
  qr: 'qr',
  open: 'open',
};

const TOP_STATES: Readonly<Record<string, ApiState>> = {
  created: 'created',
  disconnected: 'disconnected',
  backoff: 'connecting',
  deleted: 'deleted',
};

export function apiStateOfValue(value: StateValue): ApiState {
  if (typeof value === 'string') {
    const state = TOP_STATES[value];
    if (state) return state;
  } else {
    const session = value['session'];
    if (typeof session === 'string') {
      const state = SESSION_STATES[session];
      if (state) return state;
    }
  }
  throw new Error(`instance machine: no API state for ${JSON.stringify(value)}`);
}

/** The API state of a machine snapshot (or of anything with its `value`, such as a folded stream). */
export function apiStateOf(snapshot: { readonly value: StateValue }): ApiState {
  return apiStateOfValue(snapshot.value);
}

/** States with a socket or a pending retry: the instance is trying to be, or is, connected. */
export function isLive(state: ApiState): boolean {
  return state === 'connecting' || state === 'qr' || state === 'open';
}
