/**
 * The stand-in as a process of its own, for the SIGKILL/restart tests:
 *   node --import tsx test/support/kurrentdb-standin/main.ts <log file> [<port>]
 * Replays <log file>, listens on 127.0.0.1:<port> (0 or absent: ephemeral) and prints "listening <port>".
 * Every append is in the file before it is acknowledged, so a SIGKILL loses nothing acknowledged.
 */
import { startKurrentStandIn } from './server.ts';

const [file, port] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: main.ts <log file> [<port>]\n');
  process.exit(2);
}
const standIn = await startKurrentStandIn({ file, port: Number(port ?? 0) });
process.stdout.write(`listening ${standIn.port}\n`);
process.on('SIGTERM', () => {
  void standIn.stop().then(() => process.exit(0));
});
