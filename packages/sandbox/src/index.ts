/**
 * A local WhatsApp stand-in that unmodified Baileys pairs with, logs into and chats through.
 *
 *   const sandbox = await startSandbox();
 *   // Baileys: waWebSocketUrl = sandbox.wsUrl, and trust sandbox.rootPublicKeyBase64 as the Noise root
 *   const alice = sandbox.control.createAccount({ name: 'Alice' });
 *   await sandbox.control.scanQr(alice.phoneNumber, qrFromBaileys);
 *
 * One port serves both the WebSocket (`/ws/chat`) and the HTTP control API (`/control/...`). It
 * listens on 127.0.0.1 only.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SandboxControl } from './control.ts';
import { createControlHandler } from './http.ts';
import { quietLibsignal } from './quiet.ts';
import { SandboxServer } from './server.ts';
import type { SandboxLogger, SandboxOptions } from './types.ts';

export { SandboxControl } from './control.ts';
export type { CreateAccountOptions, SendOptions, WaitOptions } from './control.ts';
export type { GroupChanges, ParticipantAction } from './groups.ts';
export type { AppStateMutation } from './app-state.ts';
export type { DeviceFaultView, FaultKind, FaultOptions } from './faults.ts';
export * from './types.ts';

export interface Sandbox {
  /** What Baileys' `waWebSocketUrl` should be. */
  readonly wsUrl: string;
  /** The Noise root key to trust instead of WhatsApp's (`WA_CERT_DETAILS.PUBLIC_KEY`), base64. */
  readonly rootPublicKeyBase64: string;
  /** Base URL of the HTTP control API (same port as the WebSocket). */
  readonly controlUrl: string;
  readonly port: number;
  readonly control: SandboxControl;
  close(): Promise<void>;
}

const SILENT: SandboxLogger = { debug() {}, info() {}, warn() {}, error() {} };

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const host = options.host ?? '127.0.0.1';
  if (host !== '127.0.0.1') throw new Error('the sandbox listens on 127.0.0.1 only');
  if (options.quietLibsignal ?? true) quietLibsignal();
  const server = new SandboxServer(options, options.logger ?? SILENT);
  const control = new SandboxControl(server);
  const handleControl = createControlHandler(control, () => urls);
  const http: Server = createServer((req, res) => void handleControl(req, res));
  http.on('upgrade', (req, socket, head) => {
    if (!req.url?.startsWith('/ws')) {
      socket.destroy();
      return;
    }
    server.handleUpgrade(req, socket, head);
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = http.address() as AddressInfo;
  const urls = {
    wsUrl: `ws://${host}:${port}/ws/chat`,
    rootPublicKeyBase64: server.identity.rootPublicKey.toString('base64'),
    controlUrl: `http://${host}:${port}`,
  };
  let closing: Promise<void> | undefined;
  return {
    ...urls,
    port,
    control,
    close() {
      closing ??= (async () => {
        await server.close();
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
      })();
      return closing;
    },
  };
}
