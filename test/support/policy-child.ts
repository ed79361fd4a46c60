/**
 * A zapwire process for the process-policy test (test/integration/security/process-policy.test.ts):
 * the app with the fake connector and the process policy (src/process.ts), listening on a free port. Usage:
 *   node --import tsx test/support/policy-child.ts <dataDir> <databaseUrl>
 * Logs JSON lines to stdout (the first "zapwire listening" line has the URL). The first connection it
 * opens also leaves a rejected promise nobody awaits, as a Baileys socket sometimes does. A line "throw"
 * on stdin throws an exception nobody catches.
 */
import { createInterface } from 'node:readline';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { startZapwire } from '../../src/main.ts';
import { installProcessPolicy } from '../../src/process.ts';
import { FakeWhatsAppConnector } from '../../src/whatsapp/fake.ts';
import type { WhatsAppConnector } from '../../src/whatsapp/port.ts';
import { ADMIN_KEY } from './zapwire.ts';

const [dataDir, databaseUrl] = process.argv.slice(2);
if (!dataDir || !databaseUrl) {
  process.stderr.write('usage: policy-child.ts <dataDir> <databaseUrl>\n');
  process.exit(2);
}
const logger = pino({ level: 'info' });
const fake = new FakeWhatsAppConnector();
let opened = 0;
const connector: WhatsAppConnector = {
  open(options, listener) {
    const connection = fake.open(options, listener);
    if (++opened === 1) {
      // Not awaited by anyone: an unhandled rejection in this instance's connection.
      void Promise.reject(new Error(`simulated rejection in the connection of ${options.instanceId}`));
    }
    return connection;
  },
  removeSession: (instanceId) => fake.removeSession(instanceId),
};
const zapwire = await startZapwire({
  config: loadConfig({
    GLOBAL_API_KEY: ADMIN_KEY,
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
  }),
  logger,
  connector,
});
installProcessPolicy(zapwire, logger);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'throw')
    setTimeout(() => {
      throw new Error('simulated uncaught exception');
    }, 0);
});
