/**
 * Raw Baileys against the sandbox, for tests: trust the sandbox's Noise root, open a socket with a
 * silent logger and an in-memory auth state, record every event, and wait for the ones a test cares
 * about. `linkDevice` runs the whole QR pairing (QR → scan → 515 → login → open).
 *
 * Trusting the root replaces `WA_CERT_DETAILS.PUBLIC_KEY`, which is process-wide: a test process that
 * uses these helpers cannot talk to real WhatsApp. Every sandbox shares the same test root, so several
 * sandboxes in one process are fine.
 */
import makeWASocket, {
  Browsers,
  WA_CERT_DETAILS,
  type BaileysEventMap,
  type SocketConfig,
  type WASocket,
} from '@whiskeysockets/baileys';
import type { Sandbox } from '../../src/index.ts';
import { quietLibsignal } from '../../src/quiet.ts';
import { memoryAuth, type MemoryAuth } from './baileys-auth.ts';

type ILogger = NonNullable<SocketConfig['logger']>;

const silent: ILogger = {
  level: 'silent',
  child: () => silent,
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
};

export function trustSandbox(sandbox: Pick<Sandbox, 'rootPublicKeyBase64'>): void {
  (WA_CERT_DETAILS as { PUBLIC_KEY: Buffer }).PUBLIC_KEY = Buffer.from(sandbox.rootPublicKeyBase64, 'base64');
}

export interface RecordedEvent<K extends keyof BaileysEventMap = keyof BaileysEventMap> {
  readonly event: K;
  readonly data: BaileysEventMap[K];
  readonly at: number;
}

export interface ConnectOptions {
  readonly auth?: MemoryAuth;
  /** Baileys' `qrTimeout`: how long each QR ref is shown (the first one and every next one). */
  readonly qrTimeoutMs?: number;
  /** Anything else for `makeWASocket` (defaults here: silent logger, no history-sync veto, offline on connect). */
  readonly config?: Partial<SocketConfig>;
}

export interface BaileysClient {
  readonly sock: WASocket;
  readonly auth: MemoryAuth;
  readonly events: RecordedEvent[];
  /**
   * Resolves with the first event of that kind matching `predicate`, looking at events already
   * recorded since `from` (an index into `events`, default 0) and then at new ones.
   */
  waitFor<K extends keyof BaileysEventMap>(
    event: K,
    predicate?: (data: BaileysEventMap[K]) => boolean,
    opts?: { timeoutMs?: number; from?: number },
  ): Promise<BaileysEventMap[K]>;
  /** The next QR string Baileys emits. */
  qr(opts?: { from?: number; timeoutMs?: number }): Promise<string>;
  opened(timeoutMs?: number): Promise<void>;
  /** The status code Baileys closed with (`lastDisconnect.error.output.statusCode`). */
  closed(timeoutMs?: number): Promise<number | undefined>;
  /** Closes the socket (no logout) and waits for it to be closed. */
  end(): Promise<void>;
}

export function statusCodeOf(update: BaileysEventMap['connection.update']): number | undefined {
  const error = update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined;
  return error?.output?.statusCode;
}

export function connectBaileys(
  sandbox: Pick<Sandbox, 'wsUrl' | 'rootPublicKeyBase64'>,
  opts: ConnectOptions = {},
): BaileysClient {
  quietLibsignal();
  trustSandbox(sandbox);
  const auth = opts.auth ?? memoryAuth();
  const sock = makeWASocket({
    waWebSocketUrl: sandbox.wsUrl,
    auth: auth.state,
    logger: silent,
    browser: Browsers.macOS('Chrome'),
    markOnlineOnConnect: false,
    qrTimeout: opts.qrTimeoutMs,
    connectTimeoutMs: 10_000,
    defaultQueryTimeoutMs: 10_000,
    ...opts.config,
  });
  const events: RecordedEvent[] = [];
  const waiters = new Set<(e: RecordedEvent) => void>();
  sock.ev.process((batch) => {
    for (const [event, data] of Object.entries(batch)) {
      const recorded = { event, data, at: Date.now() } as RecordedEvent;
      if (event === 'creds.update') auth.saveCreds(data as BaileysEventMap['creds.update']);
      events.push(recorded);
      for (const waiter of [...waiters]) waiter(recorded);
    }
  });

  const waitFor: BaileysClient['waitFor'] = (event, predicate, { timeoutMs = 10_000, from = 0 } = {}) => {
    type Data = BaileysEventMap[typeof event];
    const matches = (e: RecordedEvent): boolean =>
      e.event === event && (!predicate || predicate(e.data as Data));
    const past = events.slice(from).find(matches);
    if (past) return Promise.resolve(past.data as Data);
    return new Promise<Data>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${event}`));
      }, timeoutMs);
      const waiter = (e: RecordedEvent): void => {
        if (!matches(e)) return;
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve(e.data as Data);
      };
      waiters.add(waiter);
    });
  };

  const client: BaileysClient = {
    sock,
    auth,
    events,
    waitFor,
    async qr({ from, timeoutMs } = {}) {
      const update = await waitFor('connection.update', (u) => !!u.qr, { from, timeoutMs });
      return update.qr!;
    },
    async opened(timeoutMs = 10_000) {
      const update = await waitFor(
        'connection.update',
        (u) => u.connection === 'open' || u.connection === 'close',
        { timeoutMs },
      );
      if (update.connection === 'close')
        throw new Error(`closed with ${statusCodeOf(update)} instead of opening`);
    },
    async closed(timeoutMs = 10_000) {
      return statusCodeOf(await waitFor('connection.update', (u) => u.connection === 'close', { timeoutMs }));
    },
    async end() {
      if (
        events.some(
          (e) =>
            e.event === 'connection.update' &&
            (e.data as BaileysEventMap['connection.update']).connection === 'close',
        )
      )
        return;
      sock.end(undefined);
      await client.closed();
    },
  };
  return client;
}

/**
 * Links a new Baileys device to `account` by QR and logs it in: returns the open client (the second
 * socket; the first one closed with 515 after pairing).
 */
export async function linkDevice(
  sandbox: Sandbox,
  account: string,
  opts: Omit<ConnectOptions, 'auth'> = {},
): Promise<BaileysClient> {
  const pairing = connectBaileys(sandbox, opts);
  const qr = await pairing.qr();
  await sandbox.control.scanQr(account, qr);
  const code = await pairing.closed();
  if (code !== 515) throw new Error(`pairing socket closed with ${code}, expected 515`);
  const client = connectBaileys(sandbox, { ...opts, auth: pairing.auth });
  await client.opened();
  return client;
}
