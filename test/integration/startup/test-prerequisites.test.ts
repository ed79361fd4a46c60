/**
 * `npm test` (scripts/test.mjs) checks what the suite needs before any test runs: with RabbitMQ missing
 * and Chromium not where it is said to be, it stops at once with one message naming both and the command
 * for each, runs no test, and leaves nothing running (a NATS it started for the run is stopped again). With
 * everything there it says what it found.
 */
import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../support/server-process.ts';

async function listens(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

describe('npm test prerequisites', () => {
  it('stops before any test with one message naming what is missing and the command for it', async () => {
    const rabbitmqPort = await freePort();
    const natsPort = await freePort();
    const run = spawn(process.execPath, ['scripts/test.mjs'], {
      env: {
        ...process.env,
        AMQP_URL: `amqp://guest:guest@127.0.0.1:${rabbitmqPort}`,
        NATS_PORT: String(natsPort),
        CHROMIUM_PATH: '/nonexistent/chromium',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    run.stdout.on('data', (d: Buffer) => (output += d.toString()));
    run.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => run.on('exit', resolve));

    expect(code).toBe(1);
    expect(output.match(/npm test needs what is missing below; no test was run\./g)).toHaveLength(1);
    expect(output).toMatch(
      new RegExp(`RabbitMQ (is installed but )?(is )?not running on 127\\.0\\.0\\.1:${rabbitmqPort}: \\S+`),
    );
    expect(output).toContain('CHROMIUM_PATH=/nonexistent/chromium is not an executable file');
    // vitest never started.
    expect(output).not.toMatch(/RUN|Test Files/);
    // Whatever it started for the run (NATS, when installed) is gone again.
    expect(await listens(natsPort)).toBe(false);
  }, 60_000);

  it('says what it found when everything is there', () => {
    const run = spawnSync(process.execPath, ['scripts/test.mjs', '--check-only'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const found = /^test prerequisites: (.*)$/m.exec(run.stderr)?.[1] ?? '';
    for (const what of ['PostgreSQL', 'RabbitMQ 127.0.0.1:5672', 'NATS 127.0.0.1:4222', 'Chromium /']) {
      expect(found).toContain(what);
    }
    expect(run.status).toBe(0);
  });
});
