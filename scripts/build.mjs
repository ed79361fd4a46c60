#!/usr/bin/env node
/**
 * `npm run build`: compiles src/, machines/ and projections/ to dist/ with tsc (the same layout, so paths
 * computed from import.meta.url hold), then copies the files the code reads at run time (SQL migrations,
 * static pages). With --if-stale (npm start's prestart), does nothing when dist/ is newer than every
 * source file, so a restart costs no compile.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const stamp = join(dist, '.build-stamp');
const sourceRoots = ['src', 'machines', 'projections'];
const inputs = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'];

function* files(directory) {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}

function newestSource() {
  let newest = 0;
  for (const name of inputs) newest = Math.max(newest, statSync(join(root, name)).mtimeMs);
  for (const source of sourceRoots) {
    for (const file of files(join(root, source))) newest = Math.max(newest, statSync(file).mtimeMs);
  }
  return newest;
}

if (process.argv.includes('--if-stale') && existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource()) {
  process.exit(0);
}

const started = Date.now();
process.stderr.write('zapwire: compiling to dist/ ...\n');
rmSync(stamp, { force: true });
const tsc = spawnSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')],
  {
    stdio: 'inherit',
  },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

// Everything tsc does not emit that the code opens at run time.
for (const source of sourceRoots) {
  for (const file of files(join(root, source))) {
    const inMigrations = file.endsWith('.sql');
    const isStatic = relative(root, file).startsWith(join('src', 'http', 'static'));
    if (inMigrations || isStatic) cpSync(file, join(dist, relative(root, file)));
  }
}
writeFileSync(stamp, `${new Date().toISOString()}\n`);
process.stderr.write(`zapwire: compiled in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
