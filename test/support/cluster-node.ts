/**
 * One zapwire node as a real process, for the cluster tests: the whole app (HTTP on PORT, configuration
 * from the environment, DATABASE_URL shared with the other nodes) with the fake WhatsApp connector.
 *
 *   node --import tsx test/support/cluster-node.ts
 *
 * Every instance counts as paired (a connection resumes on its own), so an instance that moves to another
 * node opens there without a QR. While a connection is live the node delivers a call event on it every
 * 100 ms (inbound traffic: an append to the instance's `wa-` stream), marked with the node id, so a test can
 * see whose writes got in. It prints one JSON line per fact on stdout: `{"node":"ready",...}`,
 * `{"fake":"opened"|"closed","instanceId":...}`, and the server's
 * log lines (LOG_LEVEL; a write the database refused is logged with `err.type` FencedWriteError).
 */
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { startZapwire } from '../../src/main.ts';
import { FakeWhatsAppConnector, type FakeConnection } from '../../src/whatsapp/fake.ts';
import type { OpenConnectionOptions, WhatsAppSignalListener } from '../../src/whatsapp/port.ts';

function say(fact: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...fact, t: Date.now() })}\n`);
}

class ClusterTestConnector extends FakeWhatsAppConnector {
  override open(options: OpenConnectionOptions, listener: WhatsAppSignalListener): FakeConnection {
    this.saveSession(options.instanceId);
    const connection = super.open(options, listener);
    say({ fake: 'opened', instanceId: options.instanceId });
    return connection;
  }

  override connectionClosed(connection: FakeConnection): void {
    super.connectionClosed(connection);
    say({ fake: 'closed', instanceId: connection.instanceId });
  }
}

const config = loadConfig();
const fake = new ClusterTestConnector();
const logger = pino({ level: config.logLevel });
const zapwire = await startZapwire({ config, logger, connector: fake });
say({ node: 'ready', nodeId: zapwire.cluster.selfId, url: zapwire.url });

let serial = 0;
const traffic = setInterval(() => {
  for (const connection of fake.connections()) {
    if (connection.state !== 'open') continue;
    serial += 1;
    connection.deliver({
      type: 'CallReceived',
      data: {
        at: new Date().toISOString(),
        callId: `${zapwire.cluster.selfId}#${serial}`,
        fromJid: '5511777777777@s.whatsapp.net',
        isVideo: false,
        status: 'offer',
        rejected: false,
      },
    });
  }
}, 100);

process.on('SIGTERM', () => {
  clearInterval(traffic);
  const started = Date.now();
  zapwire.stop().then(
    () => {
      say({ node: 'stopped', ms: Date.now() - started });
      process.exit(0);
    },
    (error: unknown) => {
      say({ node: 'stop failed', error: String(error) });
      process.exit(1);
    },
  );
});
