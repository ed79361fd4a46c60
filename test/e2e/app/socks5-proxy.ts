/**
 * A minimal SOCKS5 proxy for tests (RFC 1928 CONNECT, RFC 1929 username/password), on 127.0.0.1 only.
 * It records every tunnel it opened and the bytes it carried, so a test can see that the traffic really
 * went through it. It only connects to loopback destinations.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TunnelRecord {
  readonly destination: string;
  readonly username: string | null;
  bytesUp: number;
  bytesDown: number;
}

export interface Socks5Proxy {
  readonly port: number;
  readonly tunnels: TunnelRecord[];
  /** Authentication attempts that were refused. */
  readonly refused: number;
  close(): Promise<void>;
}

export async function startSocks5Proxy(credentials?: {
  username: string;
  password: string;
}): Promise<Socks5Proxy> {
  const tunnels: TunnelRecord[] = [];
  const sockets = new Set<Socket>();
  let refused = 0;

  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    let buffer = Buffer.alloc(0);
    let stage: 'greeting' | 'auth' | 'request' | 'tunnel' = 'greeting';
    let username: string | null = null;

    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (stage === 'greeting') {
          if (buffer.length < 2 || buffer.length < 2 + buffer[1]!) return;
          const methods = [...buffer.subarray(2, 2 + buffer[1]!)];
          buffer = buffer.subarray(2 + buffer[1]!);
          const wanted = credentials ? 0x02 : 0x00;
          if (!methods.includes(wanted)) {
            client.end(Buffer.from([0x05, 0xff]));
            return;
          }
          client.write(Buffer.from([0x05, wanted]));
          stage = credentials ? 'auth' : 'request';
          continue;
        }
        if (stage === 'auth') {
          if (buffer.length < 2) return;
          const ulen = buffer[1]!;
          if (buffer.length < 3 + ulen) return;
          const plen = buffer[2 + ulen]!;
          if (buffer.length < 3 + ulen + plen) return;
          const user = buffer.subarray(2, 2 + ulen).toString();
          const pass = buffer.subarray(3 + ulen, 3 + ulen + plen).toString();
          buffer = buffer.subarray(3 + ulen + plen);
          if (!credentials || user !== credentials.username || pass !== credentials.password) {
            refused += 1;
            client.end(Buffer.from([0x01, 0x01]));
            return;
          }
          username = user;
          client.write(Buffer.from([0x01, 0x00]));
          stage = 'request';
          continue;
        }
        if (stage === 'request') {
          if (buffer.length < 5) return;
          const type = buffer[3];
          let host: string;
          let offset: number;
          if (type === 0x01) {
            if (buffer.length < 10) return;
            host = [...buffer.subarray(4, 8)].join('.');
            offset = 8;
          } else if (type === 0x03) {
            const len = buffer[4]!;
            if (buffer.length < 5 + len + 2) return;
            host = buffer.subarray(5, 5 + len).toString();
            offset = 5 + len;
          } else {
            client.end(Buffer.from([0x05, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
            return;
          }
          const port = buffer.readUInt16BE(offset);
          const rest = buffer.subarray(offset + 2);
          buffer = Buffer.alloc(0);
          if (!['127.0.0.1', 'localhost'].includes(host)) {
            // Loopback only: this proxy exists for tests on this machine.
            client.end(Buffer.from([0x05, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
            return;
          }
          stage = 'tunnel';
          client.off('data', onData);
          const record: TunnelRecord = { destination: `${host}:${port}`, username, bytesUp: 0, bytesDown: 0 };
          tunnels.push(record);
          const upstream = connect({ host: '127.0.0.1', port }, () => {
            client.write(Buffer.from([0x05, 0x00, 0x00, 0x01, 127, 0, 0, 1, 0, 0]));
            if (rest.length > 0) {
              record.bytesUp += rest.length;
              upstream.write(rest);
            }
            client.on('data', (data: Buffer) => {
              record.bytesUp += data.length;
              upstream.write(data);
            });
            upstream.on('data', (data: Buffer) => {
              record.bytesDown += data.length;
              client.write(data);
            });
          });
          sockets.add(upstream);
          upstream.on('close', () => {
            sockets.delete(upstream);
            client.destroy();
          });
          upstream.on('error', () => client.end(Buffer.from([0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0])));
          client.on('close', () => upstream.destroy());
          return;
        }
        return;
      }
    };
    client.on('data', onData);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    tunnels,
    get refused() {
      return refused;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port on which nothing listens (bound, then released). */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}
