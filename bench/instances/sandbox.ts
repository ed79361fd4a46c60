/** The sandbox as the instances bench uses it: one account per instance, and the phone that scans. */
import { startSandbox } from '@zapwire/sandbox';

export interface BenchSandbox {
  readonly wsUrl: string;
  readonly rootPublicKeyBase64: string;
  /** A new account; returns its phone number. */
  newPhone(): Promise<string>;
  /** The account's phone scans the QR text the client showed. */
  scan(phone: string, qr: string): Promise<void>;
  close(): Promise<void>;
}

export async function startBenchSandbox(): Promise<BenchSandbox> {
  // One pre-key reported on the server: each first login uploads 5 pre-keys, not 812 (both variants alike).
  const sandbox = await startSandbox({ smallPreKeyBatches: true });
  let serial = 0;
  return {
    wsUrl: sandbox.wsUrl,
    rootPublicKeyBase64: sandbox.rootPublicKeyBase64,
    async newPhone() {
      serial += 1;
      return sandbox.control.createAccount({ phoneNumber: `5511${String(70_000_000 + serial)}` }).phoneNumber;
    },
    async scan(phone, qr) {
      await sandbox.control.scanQr(phone, qr);
    },
    close: () => sandbox.close(),
  };
}
