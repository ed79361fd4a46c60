/**
 * Import cycles among the repository's own TypeScript files: every relative import counts (`import type`,
 * `export … from` and `import()` included), since a type-only cycle still ties the files' designs together.
 * A cycle is reported as the set of files that reach each other (a strongly connected component), largest
 * first.
 *
 *   npm run import-cycles [-- directory …]   (default: every source, test and bench directory)
 *
 * Prints the cycles and exits 1 when there is one. test/unit/import-cycles.test.ts runs it on the repository.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const DEFAULT_DIRECTORIES = [
  'src',
  'machines',
  'projections',
  'packages/sandbox/src',
  'packages/sandbox/test',
  'test',
  'bench',
];

function* sourceFiles(directory: string): Generator<string> {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') yield* sourceFiles(path);
    } else if (/\.(c|m)?ts$/.test(entry.name) && !entry.name.endsWith('.d.ts')) {
      yield path;
    }
  }
}

/** The file a relative specifier names: as written, or its `.ts` twin of a `.js` specifier. */
function resolveRelative(from: string, specifier: string): string | undefined {
  const target = resolve(dirname(from), specifier);
  const candidates = [target, target.replace(/\.(c|m)?js$/, (ext) => ext.replace('j', 't')), `${target}.ts`];
  candidates.push(join(target, 'index.ts'));
  return candidates.find((path) => existsSync(path) && statSync(path).isFile());
}

/** What a file imports, as written: `import`, `import type`, `export … from`, `import()`. */
export function importSpecifiers(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** The TypeScript files under a directory (declaration files and node_modules left out). */
export function typeScriptFiles(directory: string): string[] {
  return [...sourceFiles(directory)];
}

/** Every file under the directories, with the files of that same set it imports. */
export function importGraph(directories: readonly string[]): Map<string, string[]> {
  const files = directories.flatMap((directory) => [...sourceFiles(resolve(directory))]);
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const targets = new Set<string>();
    for (const fileName of importSpecifiers(file)) {
      if (!fileName.startsWith('.')) continue;
      const target = resolveRelative(file, fileName);
      if (target && known.has(target)) targets.add(target);
    }
    graph.set(file, [...targets]);
  }
  return graph;
}

/** Tarjan's strongly connected components with more than one file, or one file importing itself. */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (file: string): void => {
    index.set(file, next);
    low.set(file, next);
    next++;
    stack.push(file);
    onStack.add(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(file, Math.min(low.get(file)!, index.get(target)!));
      }
    }
    if (low.get(file) !== index.get(file)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== file);
    if (component.length > 1 || (graph.get(file) ?? []).includes(file)) cycles.push(component.sort());
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return cycles.sort((a, b) => b.length - a.length);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const given = process.argv.slice(2);
  const directories = (given.length > 0 ? given : DEFAULT_DIRECTORIES.map((d) => join(root, d))).filter(
    (directory) => existsSync(directory),
  );
  const graph = importGraph(directories);
  const cycles = importCycles(graph);
  process.stdout.write(
    `${graph.size} files, ${cycles.length} import cycle${cycles.length === 1 ? '' : 's'}` +
      ` (${cycles.reduce((n, c) => n + c.length, 0)} files in them)\n`,
  );
  for (const cycle of cycles) {
    process.stdout.write(
      `\n  ${cycle.length} files:\n${cycle.map((f) => `    ${relative(root, f)}`).join('\n')}\n`,
    );
  }
  process.exit(cycles.length > 0 ? 1 : 0);
}
