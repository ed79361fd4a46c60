/**
 * Preloaded into the app by the e2e bench when BENCH_E2E_SQL=1 (`node --import tsx --import
 * ./bench/e2e/count-sql.ts src/main.ts`): counts every statement sent through node-postgres, by its text.
 * SIGUSR2 writes the counts since the previous SIGUSR2 to stderr as one `SQLCOUNT {json}` line and starts
 * again, so the bench can take them around a load phase.
 */
import pg from 'pg';

const counts = new Map<string, number>();
const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;

(pg.Client.prototype as { query: (...args: unknown[]) => unknown }).query = function (
  this: pg.Client,
  ...args: unknown[]
) {
  const first = args[0];
  const text = typeof first === 'string' ? first : (first as { text?: string } | undefined)?.text;
  if (text !== undefined) {
    let key = text.replace(/\s+/g, ' ').trim().slice(0, 160);
    const params = args[1];
    if (text.includes('FROM es_append') && Array.isArray(params) && typeof params[3] === 'string') {
      // Which events: the stream category and the types appended together.
      const types = (JSON.parse(params[3]) as Array<{ type: string }>).map((e) => e.type).join(',');
      key = `es_append ${String(params[1])}: ${types}`;
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return original.apply(this, args);
};

process.on('SIGUSR2', () => {
  const sorted = Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
  process.stderr.write(`SQLCOUNT ${JSON.stringify(sorted)}\n`);
  counts.clear();
});
