/** Baileys auth state held in memory only: what a bare-Baileys baseline uses (no persistence cost). */
import { initAuthCreds, type AuthenticationState, type SignalDataTypeMap } from '@whiskeysockets/baileys';

export function memoryAuth(): AuthenticationState {
  const creds = initAuthCreds();
  const data = new Map<string, unknown>();
  return {
    creds,
    keys: {
      get: async <T extends keyof SignalDataTypeMap>(type: T, ids: string[]) => {
        const out: { [id: string]: SignalDataTypeMap[T] } = {};
        for (const id of ids) {
          const value = data.get(`${type}.${id}`);
          if (value !== undefined) out[id] = value as SignalDataTypeMap[T];
        }
        return out;
      },
      set: async (set) => {
        for (const [type, values] of Object.entries(set)) {
          for (const [id, value] of Object.entries(values ?? {})) {
            if (value === null || value === undefined) data.delete(`${type}.${id}`);
            else data.set(`${type}.${id}`, value);
          }
        }
      },
    },
  };
}
