/**
 * `npm run bench -- <name> [<name> …]` runs bench/<name>/index.ts (its default export); without a name,
 * every benchmark in bench/ runs, one after the other. Benchmarks print their own tables.
 */
import { readdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function available(): string[] {
  return readdirSync(here, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(here, entry.name, 'index.ts')))
    .map((entry) => entry.name)
    .sort();
}

async function main(): Promise<void> {
  const names = process.argv.slice(2).filter((arg) => arg !== '--');
  const all = available();
  const selected = names.length > 0 ? names : all;
  const unknown = selected.filter((name) => !all.includes(name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}; available: ${all.join(', ')}\n`);
    process.exit(2);
  }
  for (const name of selected) {
    console.log(`\n=== bench: ${name} ===`);
    const module = (await import(pathToFileURL(join(here, name, 'index.ts')).href)) as {
      default?: () => Promise<void>;
    };
    if (typeof module.default !== 'function') throw new Error(`bench/${name}/index.ts has no default export`);
    await module.default();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
