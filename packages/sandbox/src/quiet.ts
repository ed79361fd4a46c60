/**
 * libsignal logs every session it opens or closes with `console.info`/`console.warn`, including key
 * material, and a failed decryption with `console.error`. These lines are filtered out (by their fixed
 * first argument); everything else still reaches the console. Installing twice is harmless.
 */
const LIBSIGNAL_LINES = [
  'Closing session:',
  'Opening session:',
  'Removing old closed session:',
  'Migrating session to:',
  'Closing open session in favor of incoming prekey bundle',
  'Decrypted message with closed session.',
  'Session already closed',
  'Session already open',
  'Failed to decrypt message with any known session',
  'Session error:',
  'WARNING: Expected pubkey of length 33',
  'Unhandled bucket type',
];

const INSTALLED = Symbol.for('zapwire.sandbox.quietLibsignal');

function isLibsignalLine(args: unknown[]): boolean {
  const first = args[0];
  return typeof first === 'string' && LIBSIGNAL_LINES.some((line) => first.startsWith(line));
}

export function quietLibsignal(): void {
  const target = console as Console & { [INSTALLED]?: boolean };
  if (target[INSTALLED]) return;
  target[INSTALLED] = true;
  for (const level of ['info', 'warn', 'error', 'log'] as const) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      if (!isLibsignalLine(args)) original(...args);
    };
  }
}
