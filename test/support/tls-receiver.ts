/**
 * A real HTTPS webhook receiver whose TLS can be made to fail in each way a receiver's can: a certificate
 * for another name, an expired one, a self-signed one, one from a CA the sender does not trust, or a
 * connection reset during the handshake. The certificates are made with the machine's `openssl` in a
 * temporary directory (nothing is committed or downloaded); the sender trusts `ca` only.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type TlsMode = 'ok' | 'wrong-name' | 'expired' | 'self-signed' | 'unknown-ca' | 'handshake-reset';
export const TLS_FAILURES: readonly Exclude<TlsMode, 'ok'>[] = [
  'wrong-name',
  'expired',
  'self-signed',
  'unknown-ca',
  'handshake-reset',
];

interface KeyPair {
  readonly key: string;
  readonly cert: string;
}

export interface TestPki {
  /** The CA a sender should trust (PEM). */
  readonly ca: string;
  /** Its path, for WEBHOOK_CA_FILE. */
  readonly caFile: string;
  readonly leaves: Readonly<Record<Exclude<TlsMode, 'handshake-reset'>, KeyPair>>;
  remove(): void;
}

const CA_CONFIG = `[ ca ]
default_ca = test_ca
[ test_ca ]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
`;

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'zapwire-pki-'));
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  const read = (name: string): string => readFileSync(join(dir, name), 'utf8');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const makeCa = (name: string): void => {
    openssl(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '3650',
      '-subj',
      `/CN=${name}`,
    );
    writeFileSync(join(dir, `${name}.cnf`), CA_CONFIG);
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), '01\n');
  };
  const leaf = (name: string, altNames: string, ca: string, dates: string[]): KeyPair => {
    openssl(
      'req',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
      '-addext',
      `subjectAltName=${altNames}`,
    );
    openssl(
      'ca',
      '-batch',
      '-config',
      `${ca}.cnf`,
      '-cert',
      `${ca}.crt`,
      '-keyfile',
      `${ca}.key`,
      '-in',
      `${name}.csr`,
      '-out',
      `${name}.crt`,
      ...dates,
    );
    return { key: read(`${name}.key`), cert: read(`${name}.crt`) };
  };
  const local = 'DNS:localhost,IP:127.0.0.1';
  const valid = ['-days', '3650'];
  makeCa('trusted-ca');
  const ok = leaf('ok', local, 'trusted-ca', valid);
  const wrongName = leaf('wrong-name', 'DNS:other.example', 'trusted-ca', valid);
  const expired = leaf('expired', local, 'trusted-ca', [
    '-startdate',
    '20200101000000Z',
    '-enddate',
    '20210101000000Z',
  ]);
  const ca = read('trusted-ca.crt');
  makeCa('untrusted-ca');
  const unknownCa = leaf('unknown-ca', local, 'untrusted-ca', valid);
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'self.key',
    '-out',
    'self.crt',
    '-days',
    '3650',
    '-subj',
    '/CN=localhost',
    '-addext',
    `subjectAltName=${local}`,
  );
  return {
    ca,
    caFile: join(dir, 'trusted-ca.crt'),
    leaves: {
      ok,
      'wrong-name': wrongName,
      expired,
      'self-signed': { key: read('self.key'), cert: read('self.crt') },
      'unknown-ca': unknownCa,
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** An HTTPS receiver on 127.0.0.1 whose certificate (or handshake) is switched with `mode`. */
export class TlsReceiver {
  /** Bodies of the requests that got through, in arrival order. */
  readonly bodies: string[] = [];
  /** TCP connections accepted (every attempt, whatever its handshake did). */
  connections = 0;
  private current: TlsMode = 'ok';
  private readonly https: https.Server;
  private readonly front: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly pki: TestPki) {
    this.https = https.createServer({ ...pki.leaves.ok }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.bodies.push(Buffer.concat(chunks).toString('utf8'));
        res.end('ok');
      });
    });
    this.https.on('tlsClientError', () => undefined);
    this.front = net.createServer((socket) => {
      this.connections += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      if (this.current === 'handshake-reset') {
        socket.once('data', () => socket.resetAndDestroy());
        return;
      }
      this.https.emit('connection', socket);
    });
  }

  static async start(pki: TestPki): Promise<TlsReceiver> {
    const receiver = new TlsReceiver(pki);
    await new Promise<void>((resolve) => receiver.front.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get port(): number {
    return (this.front.address() as net.AddressInfo).port;
  }

  url(host = 'localhost', path = '/hook'): string {
    return `https://${host}:${this.port}${path}`;
  }

  /** Switches what the next handshakes get; open connections are cut so the next request reconnects. */
  mode(mode: TlsMode): void {
    this.current = mode;
    if (mode !== 'handshake-reset') {
      this.https.setSecureContext({ ...this.pki.leaves[mode] });
    }
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.front.close(() => resolve()));
    this.https.close();
  }
}
