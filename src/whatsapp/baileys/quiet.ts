/**
 * Keeps Baileys and libsignal out of the logs where they would say too much.
 *
 * libsignal (a Baileys dependency) reports every session it opens or closes with `console.info` /
 * `console.warn`, passing the whole session record, private ratchet keys included
 * (docs/whatsapp.md, "Logs and secrets"). It has no logger option, so the console methods are wrapped,
 * once per process: a call whose first argument is one of libsignal's own messages, or that carries one
 * of its session objects anywhere in its arguments, is dropped whole and only counted. Everything else
 * passes through untouched.
 */
import type { Logger } from 'pino';
import type { UserFacingSocketConfig } from '@whiskeysockets/baileys';

type ILogger = NonNullable<UserFacingSocketConfig['logger']>;

/** The messages libsignal 6 writes to the console (src/session_record.js, session_builder.js, ...). */
const LIBSIGNAL_MESSAGES = [
  'Closing session',
  'Opening session',
  'Removing old closed session',
  'Session already closed',
  'Session already open',
  'Migrating session to',
  'V1 session storage migration error',
  'Closing open session in favor of incoming prekey bundle',
  'Closing stale open session',
  'Failed to decrypt message with any known session',
  'Session error',
  'Decrypted message with closed session',
  'WARNING: Expected pubkey of length 33',
  'Unhandled bucket type',
];

const METHODS = ['log', 'info', 'warn', 'error', 'debug'] as const;
type ConsoleMethod = (typeof METHODS)[number];

const INSTALLED = Symbol.for('zapwire.libsignal-console-filter');

interface FilterState {
  dropped: number;
}

/** Whether a console call comes from libsignal (and so may hold key material). */
export function isLibsignalConsoleCall(args: readonly unknown[]): boolean {
  const [first] = args;
  if (typeof first === 'string' && LIBSIGNAL_MESSAGES.some((message) => first.startsWith(message)))
    return true;
  return args.some(looksLikeSessionRecord);
}

function looksLikeSessionRecord(value: unknown): boolean {
  if (!value || typeof value !== 'object') return false;
  const name = (value as { constructor?: { name?: string } }).constructor?.name;
  if (name === 'SessionEntry' || name === 'SessionRecord') return true;
  const candidate = value as Record<string, unknown>;
  // A session entry's shape, whatever its class: ratchet state beside the chains.
  return 'currentRatchet' in candidate && ('_chains' in candidate || 'indexInfo' in candidate);
}

/** Installs the filter once per process; returns how many calls it dropped so far. */
export function silenceLibsignalConsole(): { readonly dropped: number } {
  const holder = globalThis as unknown as Record<symbol, FilterState | undefined>;
  const existing = holder[INSTALLED];
  if (existing) return existing;
  const state: FilterState = { dropped: 0 };
  holder[INSTALLED] = state;
  for (const method of METHODS) {
    const original = console[method].bind(console) as (...args: unknown[]) => void;
    const filtered = (...args: unknown[]): void => {
      if (isLibsignalConsoleCall(args)) {
        state.dropped += 1;
        return;
      }
      original(...args);
    };
    (console as unknown as Record<ConsoleMethod, (...args: unknown[]) => void>)[method] = filtered;
  }
  return state;
}

/**
 * The logger handed to Baileys: a child of the app's logger, at `warn` at most. Baileys logs objects such
 * as the registration node at `info` and frames at `trace`; below `warn` is never wanted in production.
 */
export function baileysLogger(
  logger: Logger,
  instanceId: string,
  level: 'warn' | 'error' | 'silent' = 'warn',
): ILogger {
  const child = logger.child({ component: 'baileys', instanceId });
  const wanted = level === 'silent' ? Infinity : (logger.levels.values[level] ?? 40);
  // The stricter of the two: a silent app keeps Baileys silent too.
  child.level = logger.levelVal >= wanted ? logger.level : level;
  return child as unknown as ILogger;
}
