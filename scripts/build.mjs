#!/usr/bin/env node
/**
 * `npm run build`: transpiles src/, machines/ and projections/ to dist/ with esbuild, one output file per
 * source file in the same layout (so paths computed from import.meta.url hold), then copies the files the
 * code reads at run time (SQL migrations, static pages), and deletes what an earlier build left for sources
 * that are gone. esbuild strips the types without checking them: type-checking is `npm run lint`'s job
 * (tsc --noEmit), and takes ten times longer than this build.
 * With --if-stale (npm start's prestart), does nothing when dist/ is newer than every source file, so a
 * restart costs no build.
 */
import { cpSync, existsSync, readdirSync, rmdirSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const stamp = join(dist, '.build-stamp');
const sourceRoots = ['src', 'machines', 'projections'];
const inputs = ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/build.mjs'];

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

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  process.stderr.write(
    'zapwire: dist/ is missing or older than the sources, and esbuild (a development dependency) is not installed: run "npm install" (without --omit=dev), then start again\n',
  );
  process.exit(1);
}

const started = Date.now();
process.stderr.write('zapwire: building dist/ ...\n');
rmSync(stamp, { force: true });

const sources = sourceRoots.flatMap((source) =>
  [...files(join(root, source))].filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts')),
);

/**
 * Every import stays an import of its own file (no bundling): a relative `./x.ts` becomes `./x.js`, as
 * tsc's rewriteRelativeImportExtensions did, and a package import is left to Node.
 */
const keepImportsApart = {
  name: 'keep-imports-apart',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      const relativeTs = /^\.{1,2}\/.*\.(c|m)?ts$/.exec(args.path);
      if (!relativeTs) return { path: args.path, external: true };
      return { path: args.path.replace(/\.(c|m)?ts$/, (ext) => ext.replace('t', 'j')), external: true };
    });
  },
};

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: sources,
  outdir: dist,
  outbase: root,
  bundle: true,
  plugins: [keepImportsApart],
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  // The sources rely on tsc's semantics for class fields (ES2022 define) and keep `import` statements
  // whose bindings are only re-exported (verbatimModuleSyntax): esbuild reads both from tsconfig.json.
  tsconfig: join(root, 'tsconfig.json'),
});
if (result.errors.length > 0) process.exit(1);

const outputs = new Set(
  sources.flatMap((file) => {
    const js = join(dist, relative(root, file)).replace(/\.(c|m)?ts$/, (ext) => ext.replace('t', 'j'));
    return [js, `${js}.map`];
  }),
);

// Everything esbuild does not emit that the code opens at run time.
for (const source of sourceRoots) {
  for (const file of files(join(root, source))) {
    const inMigrations = file.endsWith('.sql');
    const isStatic = relative(root, file).startsWith(join('src', 'http', 'static'));
    if (!inMigrations && !isStatic) continue;
    const target = join(dist, relative(root, file));
    cpSync(file, target);
    outputs.add(target);
  }
}

// What an earlier build left for a source that is gone (a deleted or moved file) is not part of the server.
for (const source of sourceRoots) {
  for (const file of files(join(dist, source))) if (!outputs.has(file)) rmSync(file);
  removeEmptyDirectories(join(dist, source));
}

function removeEmptyDirectories(directory) {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    if (entry.isDirectory()) removeEmptyDirectories(join(directory, entry.name));
  }
  if (readdirSync(directory).length === 0) rmdirSync(directory);
}
writeFileSync(stamp, `${new Date().toISOString()}\n`);
process.stderr.write(`zapwire: built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
