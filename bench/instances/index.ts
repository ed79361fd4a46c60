/**
 * Instances benchmark (`npm run bench -- instances`): N idle connected instances (50 and 200 by default;
 * BENCH_INSTANCES=50,200) on the local WhatsApp sandbox. For each N, two fresh processes run one after the
 * other, each with `--expose-gc`, against the same sandbox (which runs here, in the orchestrating process):
 *
 *   baileys  bare Baileys sockets with in-memory auth: the floor
 *   zapwire  the whole app: PGlite event store and read model, instance actors, the Baileys adapter with
 *            its sealed database auth store and shared key cache
 *
 * Columns: RSS / heap / external per instance (after gc, N paired instances open minus one warm-up
 * instance open), connect→open of a paired instance (re-login, one at a time: for zapwire the adapter's
 * open() → `opened`), and restart-to-all-open (zapwire: stop the app, start a new one on the same data
 * until every instance is open again; baileys: every socket re-opened), both at 4 logins at a time
 * (RESTORE_CONCURRENCY's default). The sandbox reports one pre-key on the server so each first login
 * uploads 5 pre-keys instead of 812 (same for both variants): pairing 2 × 200 accounts would otherwise
 * spend most of the run generating keys.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { WorkerResult } from './worker.ts';
import { startBenchSandbox, type BenchSandbox } from './sandbox.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

async function controlServer(sandbox: BenchSandbox): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((request, response) => {
    let raw = '';
    request.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    request.on('end', () => {
      void (async () => {
        try {
          const body = raw ? (JSON.parse(raw) as Record<string, string>) : {};
          let out: unknown;
          if (request.url === '/phones') out = { phone: await sandbox.newPhone() };
          else if (request.url === '/scan') {
            await sandbox.scan(String(body['phone']), String(body['qr']));
            out = { ok: true };
          } else {
            response.writeHead(404).end();
            return;
          }
          response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
        } catch (error) {
          response.writeHead(500).end(error instanceof Error ? error.message : String(error));
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function runWorker(
  variant: 'baileys' | 'zapwire',
  n: number,
  controlUrl: string,
  sandbox: BenchSandbox,
): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        join(here, 'worker.ts'),
        variant,
        String(n),
        controlUrl,
        sandbox.wsUrl,
        sandbox.rootPublicKeyBase64,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line) resolve(JSON.parse(line.slice('RESULT '.length)) as WorkerResult);
      else reject(new Error(`${variant} worker (N=${n}) exited with ${code}: ${err.slice(-2000)}`));
    });
  });
}

function table(rows: string[][], header: string[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export default async function benchInstances(): Promise<void> {
  const sizes = (process.env['BENCH_INSTANCES'] ?? '50,200')
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
  const sandbox = await startBenchSandbox();
  const control = await controlServer(sandbox);
  const results: WorkerResult[] = [];
  try {
    for (const n of sizes) {
      for (const variant of ['baileys', 'zapwire'] as const) {
        const started = Date.now();
        console.log(`  ${variant} N=${n} ...`);
        const result = await runWorker(variant, n, control.url, sandbox);
        results.push(result);
        console.log(`  ${variant} N=${n} done in ${Math.round((Date.now() - started) / 1000)} s`);
      }
    }
  } finally {
    await control.close();
    await sandbox.close();
  }
  const header = [
    'N',
    'variant',
    'RSS KB/inst',
    'heap KB/inst',
    'ext KB/inst',
    'RSS MB (N open)',
    'pairing s',
    'open p50 ms',
    'open p99 ms',
    'restart→all open ms',
  ];
  const rows = results.map((r) => [
    String(r.n),
    r.variant === 'baileys' ? 'bare Baileys' : 'zapwire',
    String(r.rssPerInstanceKb),
    String(r.heapPerInstanceKb),
    String(r.externalPerInstanceKb),
    `${r.rssBeforeMb} → ${r.rssAfterMb}`,
    String(r.pairingSeconds),
    String(r.openP50Ms),
    String(r.openP99Ms),
    String(r.restartAllOpenMs),
  ]);
  console.log('');
  console.log(table(rows, header));
  console.log(
    '\nper instance = (memory with N+1 open − memory with 1 warm-up instance open) / N, after gc.' +
      '\nopen = re-login of a paired instance, one at a time; restart = 4 logins at a time until all N+1 are open' +
      '\n(zapwire restart includes opening PGlite, catching up projections and folding each instance stream).',
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchInstances().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
