/**
 * Sandbox bench (`npm run bench -- sandbox`): can the sandbox carry N linked devices at once (500 by
 * default; BENCH_SANDBOX_DEVICES=100,500)? The sandbox runs in its own process
 * (`packages/sandbox/src/main.ts --small-prekeys`, so each first login uploads 5 prekeys instead of 812)
 * and reports its own memory and CPU through GET /control/stats. Raw Baileys clients run in
 * BENCH_SANDBOX_WORKERS processes (2), each pairing its slice of the accounts BENCH_SANDBOX_CONCURRENCY at
 * a time (8).
 *
 * Per N: pair every device (QR → scan over HTTP → 515 → login → open) and keep them all connected; one
 * message from a contact's phone to every device and one back from every device (latency from the send
 * to the other side's decryption); then the sandbox closes every socket at once (428) and every device
 * logs back in. Columns: sandbox RSS with 0 and N devices, its CPU, pairing and re-login latencies,
 * message latencies, and failures (any failure is printed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AccountInfo, PhoneMessage, SandboxStats } from '@zapwire/sandbox';
import type { WorkerCommand, WorkerConfig, WorkerReply } from './worker.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

const sizes = (process.env.BENCH_SANDBOX_DEVICES ?? '500').split(',').map(Number);
const workerCount = Number(process.env.BENCH_SANDBOX_WORKERS ?? 2);
const concurrency = Number(process.env.BENCH_SANDBOX_CONCURRENCY ?? 8);
/** Messages sent one at a time, each way, for the latency columns. */
const PACED = 30;

interface SandboxProcess {
  readonly child: ChildProcess;
  readonly wsUrl: string;
  readonly controlUrl: string;
  readonly rootPublicKeyBase64: string;
}

async function startSandboxProcess(): Promise<SandboxProcess> {
  const profile = process.env.BENCH_SANDBOX_CPU_PROFILE
    ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_SANDBOX_CPU_PROFILE]
    : [];
  const child = spawn(
    process.execPath,
    [
      ...profile,
      '--import',
      'tsx',
      'packages/sandbox/src/main.ts',
      '--port',
      '0',
      '--small-prekeys',
      '--quiet',
    ],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('Control API:')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`sandbox exited with ${code}`)));
  });
  return {
    child,
    wsUrl: /WA_WEBSOCKET_URL=(\S+)/.exec(out)![1]!,
    rootPublicKeyBase64: /WA_NOISE_ROOT_PUBLIC_KEY=(\S+)/.exec(out)![1]!,
    controlUrl: /Control API: (\S+)\/control/.exec(out)![1]!,
  };
}

async function control<T>(
  sandbox: SandboxProcess,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await fetch(`${sandbox.controlUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

class Worker {
  private readonly child: ChildProcess;
  private pending: ((reply: WorkerReply) => void) | undefined;

  constructor(config: WorkerConfig) {
    this.child = spawn(process.execPath, ['--import', 'tsx', join(here, 'worker.ts')], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, BENCH_WORKER_CONFIG: JSON.stringify(config) },
    });
    this.child.on('message', (reply: WorkerReply) => this.pending?.(reply));
  }

  run<T extends WorkerReply>(command: WorkerCommand): Promise<T> {
    return new Promise<T>((resolve) => {
      this.pending = (reply) => resolve(reply as T);
      this.child.send(command);
    });
  }

  async stop(): Promise<void> {
    await this.run({ cmd: 'stop' });
    if (this.child.exitCode === null) await once(this.child, 'exit');
  }
}

function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (v: number): string => (Number.isFinite(v) ? `${Math.round(v)}` : '-');
const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);

interface Row {
  readonly n: number;
  readonly rssIdle: number;
  readonly rssLoaded: number;
  readonly perDeviceKb: number;
  readonly cpuMs: number;
  readonly pairAllS: number;
  readonly pairP50: number;
  readonly pairP99: number;
  readonly inP50: number;
  readonly inP99: number;
  readonly inBurstS: number;
  readonly outP50: number;
  readonly outP99: number;
  readonly outBurstS: number;
  readonly reloginAllS: number;
  readonly reloginP50: number;
  readonly loopP99: number;
  readonly loopMax: number;
  readonly failures: number;
}

async function runSize(n: number): Promise<Row> {
  const sandbox = await startSandboxProcess();
  const workers: Worker[] = [];
  let failures = 0;
  try {
    const contact = await control<AccountInfo>(sandbox, 'POST', '/control/accounts', { name: 'Contact' });
    const accounts: AccountInfo[] = [];
    for (let i = 0; i < n; i++)
      accounts.push(await control<AccountInfo>(sandbox, 'POST', '/control/accounts', { name: `Bench ${i}` }));
    const idle = await control<SandboxStats>(sandbox, 'GET', '/control/stats');

    const slices = Array.from({ length: workerCount }, (_, w) =>
      accounts.filter((_, i) => i % workerCount === w),
    );
    for (const slice of slices) {
      workers.push(
        new Worker({
          wsUrl: sandbox.wsUrl,
          controlUrl: sandbox.controlUrl,
          rootPublicKeyBase64: sandbox.rootPublicKeyBase64,
          accounts: slice.map((a) => a.phoneNumber),
          concurrency,
        }),
      );
    }

    const pairStarted = performance.now();
    const paired = await Promise.all(
      workers.map((w) => w.run<Extract<WorkerReply, { cmd: 'pair' }>>({ cmd: 'pair' })),
    );
    const pairAllS = (performance.now() - pairStarted) / 1000;
    const pairMs = paired.flatMap((p) => p.pairMs);
    for (const p of paired) for (const f of p.failures.slice(0, 5)) console.log(`  pairing failure: ${f}`);
    failures += paired.reduce((sum, p) => sum + p.failures.length, 0);
    const loaded = await control<SandboxStats>(sandbox, 'GET', '/control/stats');
    if (loaded.devicesOnline !== n) console.log(`  only ${loaded.devicesOnline} of ${n} devices online`);

    // Inbound, paced: one message at a time from the contact's phone to a device (latency), then a
    // burst: one to every device at once (time until all are decrypted).
    const owner = (phone: string): number =>
      slices.findIndex((slice) => slice.some((a) => a.phoneNumber === phone));
    const sendIn = async (account: AccountInfo) => ({
      account: account.phoneNumber,
      at: Date.now(),
      ...(await control<{ id: string }>(
        sandbox,
        'POST',
        `/control/accounts/${contact.phoneNumber}/messages`,
        { to: account.jid, text: 'bench in' },
      )),
    });
    const expectIn = async (sends: { account: string; id: string }[]) => {
      const replies = await Promise.all(
        workers.map((w, i) =>
          w.run<Extract<WorkerReply, { cmd: 'expect' }>>({
            cmd: 'expect',
            ids: sends.filter((s) => owner(s.account) === i).map((s) => s.id),
          }),
        ),
      );
      failures += replies.reduce((sum, r) => sum + r.missing, 0);
      return Object.assign({}, ...replies.map((r) => r.receivedAt)) as Record<string, number>;
    };
    const inbound: number[] = [];
    for (let i = 0; i < PACED; i++) {
      const s = await sendIn(accounts[(i * 7919) % n]!);
      const got = await expectIn([s]);
      if (got[s.id]) inbound.push(got[s.id]! - s.at);
    }
    const burstStarted = Date.now();
    const burst = await Promise.all(accounts.map(sendIn));
    const burstGot = await expectIn(burst);
    const inBurstS = (Math.max(...Object.values(burstGot)) - burstStarted) / 1000;

    // Outbound, paced: one device at a time writes to the contact; then every device at once.
    const decryptedBy = async (sentAt: Record<string, number>): Promise<PhoneMessage[]> => {
      const deadline = Date.now() + 120_000;
      let decrypted: PhoneMessage[] = [];
      while (Date.now() < deadline) {
        decrypted = (
          await control<PhoneMessage[]>(sandbox, 'GET', `/control/accounts/${contact.phoneNumber}/messages`)
        ).filter((m) => sentAt[m.id]);
        if (decrypted.length >= Object.keys(sentAt).length) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      failures += Object.keys(sentAt).length - decrypted.length;
      return decrypted;
    };
    const outbound: number[] = [];
    for (let i = 0; i < PACED; i++) {
      const worker = workers[i % workers.length]!;
      const { sentAt, failures: f } = await worker.run<Extract<WorkerReply, { cmd: 'send' }>>({
        cmd: 'send',
        to: contact.jid,
        count: 1,
      });
      failures += f;
      for (const m of await decryptedBy(sentAt)) outbound.push(m.receivedAt - sentAt[m.id]!);
    }
    const outStarted = Date.now();
    const sent = await Promise.all(
      workers.map((w) => w.run<Extract<WorkerReply, { cmd: 'send' }>>({ cmd: 'send', to: contact.jid })),
    );
    failures += sent.reduce((sum, s) => sum + s.failures, 0);
    const outDecrypted = await decryptedBy(
      Object.assign({}, ...sent.map((s) => s.sentAt)) as Record<string, number>,
    );
    const outBurstS = (Math.max(...outDecrypted.map((m) => m.receivedAt)) - outStarted) / 1000;

    // The sandbox closes every socket at once; every device logs back in.
    const kickStarted = performance.now();
    const relogin = workers.map((w) =>
      w.run<Extract<WorkerReply, { cmd: 'reconnect' }>>({ cmd: 'reconnect' }),
    );
    await Promise.all(
      accounts.map((a) =>
        control(
          sandbox,
          'POST',
          `/control/devices/${encodeURIComponent(`${a.phoneNumber}:1@s.whatsapp.net`)}/kick`,
          { reason: 'connectionClosed' },
        ),
      ),
    );
    const relogged = await Promise.all(relogin);
    const reloginAllS = (performance.now() - kickStarted) / 1000;
    for (const r of relogged) {
      const wrong = Object.entries(r.closeCodes).filter(([code]) => code !== '428');
      if (wrong.length) console.log(`  unexpected close codes: ${JSON.stringify(r.closeCodes)}`);
      failures += wrong.reduce((sum, [, count]) => sum + count, 0) + r.failures.length;
    }
    const after = await control<SandboxStats>(sandbox, 'GET', '/control/stats');
    if (after.devicesOnline !== n) console.log(`  only ${after.devicesOnline} of ${n} devices back online`);

    return {
      n,
      rssIdle: idle.rssBytes,
      rssLoaded: loaded.rssBytes,
      perDeviceKb: (loaded.rssBytes - idle.rssBytes) / n / 1024,
      cpuMs: after.cpuUserMs + after.cpuSystemMs - (idle.cpuUserMs + idle.cpuSystemMs),
      pairAllS,
      pairP50: percentile(pairMs, 50),
      pairP99: percentile(pairMs, 99),
      inP50: percentile(inbound, 50),
      inP99: percentile(inbound, 99),
      inBurstS,
      outP50: percentile(outbound, 50),
      outP99: percentile(outbound, 99),
      outBurstS,
      reloginAllS,
      reloginP50: percentile(
        relogged.flatMap((r) => r.openMs),
        50,
      ),
      loopP99: after.eventLoopDelayP99Ms,
      loopMax: after.eventLoopDelayMaxMs,
      failures,
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop().catch(() => undefined)));
    sandbox.child.kill('SIGTERM');
    if (sandbox.child.exitCode === null) await once(sandbox.child, 'exit');
  }
}

export default async function bench(): Promise<void> {
  console.log(
    `sandbox: ${workerCount} client processes, ${concurrency} logins at a time per process; sandbox in its own process; ` +
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} on ${os.cpus().length} cores`,
  );
  const rows: Row[] = [];
  for (const n of sizes) rows.push(await runSize(n));
  console.table(
    rows.map((r) => ({
      devices: r.n,
      'sandbox RSS idle MB': mb(r.rssIdle),
      [`sandbox RSS with N MB`]: mb(r.rssLoaded),
      'per device KB': r.perDeviceKb.toFixed(0),
      'sandbox CPU s': (r.cpuMs / 1000).toFixed(1),
      'pair all s': r.pairAllS.toFixed(1),
      'pair p50/p99 ms': `${ms(r.pairP50)}/${ms(r.pairP99)}`,
      'in p50/p99 ms': `${ms(r.inP50)}/${ms(r.inP99)}`,
      'in burst s': r.inBurstS.toFixed(1),
      'out p50/p99 ms': `${ms(r.outP50)}/${ms(r.outP99)}`,
      'out burst s': r.outBurstS.toFixed(1),
      'relogin all s': r.reloginAllS.toFixed(1),
      'relogin p50 ms': ms(r.reloginP50),
      'sandbox loop delay p99/max ms': `${r.loopP99}/${r.loopMax}`,
      failures: r.failures,
    })),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  bench().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
