/**
 * Runs the stand-in as a child process (main.ts) that persists its log to a file, so a test can SIGKILL it
 * mid-stream and start it again on the same port with the same events.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

export interface StandInProcess {
  readonly port: number;
  readonly url: string;
  readonly child: ChildProcess;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
}

export async function spawnStandIn(file: string, port = 0): Promise<StandInProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, file, String(port)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  const listening = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the stand-in did not start in time; stderr: ${stderr}`));
    }, 30_000);
    lines.on('line', (line) => {
      const match = /^listening (\d+)$/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      resolve(Number(match[1]));
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the stand-in exited before listening; stderr: ${stderr}`));
    });
  });
  return {
    port: listening,
    url: `kurrentdb://127.0.0.1:${listening}?tls=false`,
    child,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      lines.close();
    },
  };
}
