/**
 * `npm run sandbox`: runs the WhatsApp sandbox on its own and prints what to export so that
 * `npm start` (the gateway) talks to it instead of WhatsApp.
 *
 *   npm run sandbox -- [--port 7800] [--small-prekeys] [--verbose]
 *
 * Environment: SANDBOX_PORT (default 7800; 0 picks a free port).
 */
import { parseArgs } from 'node:util';
import { startSandbox, type SandboxLogger } from './index.ts';

const startedAt = performance.now();

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'small-prekeys': { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write('usage: npm run sandbox -- [--port 7800] [--small-prekeys] [--verbose | --quiet]\n');
  process.exit(0);
}

const port = Number(values.port ?? process.env.SANDBOX_PORT ?? 7800);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`invalid port: ${values.port ?? process.env.SANDBOX_PORT}\n`);
  process.exit(2);
}

function line(level: string, msg: string, data?: Record<string, unknown>): void {
  const extra = data && Object.keys(data).length ? ' ' + JSON.stringify(data) : '';
  process.stderr.write(`${new Date().toISOString()} ${level} ${msg}${extra}\n`);
}

const logger: SandboxLogger = {
  debug: (msg, data) => values.verbose && line('debug', msg, data),
  info: (msg, data) => !values.quiet && line('info', msg, data),
  warn: (msg, data) => line('warn', msg, data),
  error: (msg, data) => line('error', msg, data),
};

const sandbox = await startSandbox({ port, smallPreKeyBatches: values['small-prekeys'], logger });
const ms = Math.round(performance.now() - startedAt);

process.stdout.write(
  [
    `WhatsApp sandbox on 127.0.0.1:${sandbox.port}: started in ${ms} ms (${Math.round(process.uptime() * 1000)} ms since the process started)`,
    '',
    'Point the gateway at it (then `npm start`):',
    `  export WA_WEBSOCKET_URL=${sandbox.wsUrl}`,
    `  export WA_NOISE_ROOT_PUBLIC_KEY=${sandbox.rootPublicKeyBase64}`,
    '',
    `Control API: ${sandbox.controlUrl}/control  (packages/sandbox/README.md)`,
    `  curl -s -X POST ${sandbox.controlUrl}/control/accounts -H 'content-type: application/json' -d '{"name":"Alice"}'`,
    '',
  ].join('\n'),
);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    void sandbox.close().then(() => process.exit(0));
  });
}
