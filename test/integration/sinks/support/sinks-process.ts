/**
 * The sinks in a process of their own (sinks-child.ts), for the tests that SIGKILL it: started with the
 * configuration given, resolved once it prints "ready <port>".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./sinks-child.ts', import.meta.url));

export interface SinksChildConfig {
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  readonly amqpExchange: string;
  readonly natsUrl: string;
  readonly natsPrefix: string;
  readonly instances: ReadonlyArray<{ id: string; name: string; webhookSecret: string; sinks: unknown }>;
}

export function spawnSinksProcess(
  config: SinksChildConfig,
): Promise<{ process: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, SINKS_CHILD_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /ready (\d+)/.exec(out);
      if (match) resolve({ process: proc, port: Number(match[1]) });
    });
    proc.once('exit', (code) => reject(new Error(`sinks child exited early (${code}): ${out}`)));
  });
}

/** Resolves once the process has exited (at once when it has already). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) =>
    child.exitCode !== null || child.signalCode ? resolve() : child.once('exit', () => resolve()),
  );
}
