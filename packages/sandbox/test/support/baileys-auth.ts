/**
 * An in-memory Baileys auth state (creds + Signal keys), for tests that drive raw Baileys. Keeping it
 * across sockets is what makes the second connection after a 515 a login instead of a new pairing.
 */
import { initAuthCreds } from '@whiskeysockets/baileys';
import type { AuthenticationState, SignalDataSet, SignalDataTypeMap } from '@whiskeysockets/baileys';

export interface MemoryAuth {
  readonly state: AuthenticationState;
  /** Baileys' `creds.update` handler: merges the update into the creds. */
  saveCreds(update: Partial<AuthenticationState['creds']>): void;
  /** How many keys of a type are stored (e.g. `pre-key`, `session`). */
  count(type: keyof SignalDataTypeMap): number;
  /** Drops every key of a type (a device that lost its sessions, for the retry-receipt test). */
  forget(type: keyof SignalDataTypeMap): void;
}

export function memoryAuth(): MemoryAuth {
  const creds = initAuthCreds();
  const store = new Map<string, Map<string, unknown>>();
  const bucket = (type: string): Map<string, unknown> => {
    let map = store.get(type);
    if (!map) store.set(type, (map = new Map()));
    return map;
  };
  const state: AuthenticationState = {
    creds,
    keys: {
      get(type, ids) {
        const map = bucket(type);
        const out: Record<string, unknown> = {};
        for (const id of ids) {
          const value = map.get(id);
          if (value !== undefined) out[id] = value;
        }
        return out as { [id: string]: SignalDataTypeMap[typeof type] };
      },
      set(data: SignalDataSet) {
        for (const [type, values] of Object.entries(data)) {
          const map = bucket(type);
          for (const [id, value] of Object.entries(values ?? {})) {
            if (value === null || value === undefined) map.delete(id);
            else map.set(id, value);
          }
        }
      },
    },
  };
  return {
    state,
    saveCreds(update) {
      Object.assign(state.creds, update);
    },
    count(type) {
      return bucket(type).size;
    },
    forget(type) {
      bucket(type).clear();
    },
  };
}
