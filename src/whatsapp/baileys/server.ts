/**
 * Which WhatsApp server Baileys talks to. Unset: the real one. `WA_WEBSOCKET_URL` points the socket at
 * another protocol-compatible server (the sandbox), and `WA_NOISE_ROOT_PUBLIC_KEY` makes Baileys trust
 * that server's Noise certificate chain.
 *
 * Baileys checks the chain against `WA_CERT_DETAILS.PUBLIC_KEY`, a plain object exported from its
 * defaults; replacing the key there is the only hook, and it is process-wide (one ESM module instance):
 * one process talks to one WhatsApp. The certificate is checked at each handshake only, so sockets that
 * are already open are not affected by a change.
 */
import { WA_CERT_DETAILS } from '@whiskeysockets/baileys';

const REAL_ROOT_KEY = Buffer.from(WA_CERT_DETAILS.PUBLIC_KEY);

export interface WhatsAppServer {
  /** Baileys' `waWebSocketUrl`; undefined keeps Baileys' default (real WhatsApp). */
  readonly webSocketUrl: string | undefined;
}

/**
 * Trusts `rootPublicKey` (32 bytes) as the Noise root, or WhatsApp's own when undefined. Returns whether
 * the trusted key changed.
 */
export function trustNoiseRoot(rootPublicKey: Buffer | undefined): boolean {
  const wanted = rootPublicKey ?? REAL_ROOT_KEY;
  if (wanted.length !== 32) throw new Error('the Noise root public key must be 32 bytes');
  const current = Buffer.from(WA_CERT_DETAILS.PUBLIC_KEY);
  if (current.equals(wanted)) return false;
  (WA_CERT_DETAILS as { PUBLIC_KEY: Buffer }).PUBLIC_KEY = Buffer.from(wanted);
  return true;
}

export function trustedNoiseRoot(): Buffer {
  return Buffer.from(WA_CERT_DETAILS.PUBLIC_KEY);
}

export function isRealWhatsAppRoot(): boolean {
  return trustedNoiseRoot().equals(REAL_ROOT_KEY);
}
