/**
 * `npm run sandbox` (src/main.ts) as a process: it prints the two exports the gateway needs,
 * serves the control API on loopback, and stops cleanly on SIGTERM. Also: starting a sandbox takes
 * well under a second once the modules are loaded.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { startSandbox } from '../src/index.ts';
import { testRootKeyPair } from '../src/certs.ts';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

test('startSandbox resolves in under a second', async () => {
  const started = performance.now();
  const sandbox = await startSandbox();
  const elapsed = performance.now() - started;
  await sandbox.close();
  expect(elapsed).toBeLessThan(1_000);
});

test(
  'the CLI prints the exports, answers on the control port and exits on SIGTERM',
  { timeout: 30_000 },
  async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.setEncoding('utf8');
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: string) => {
          out += chunk;
          if (out.includes('Control API:')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`exited with ${code} before printing: ${out}`)));
      });
      const ws = /export WA_WEBSOCKET_URL=(ws:\/\/127\.0\.0\.1:(\d+)\/ws\/chat)/.exec(out);
      const key = /export WA_NOISE_ROOT_PUBLIC_KEY=(\S+)/.exec(out);
      const startMs = Number(/started in (\d+) ms/.exec(out)?.[1]);
      expect(ws).not.toBeNull();
      expect(key?.[1]).toBe(testRootKeyPair().public.toString('base64'));
      expect(startMs).toBeLessThan(1_000);
      const res = await fetch(`http://127.0.0.1:${ws![2]}/control`);
      expect(await res.json()).toMatchObject({ wsUrl: ws![1] });
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  },
);
