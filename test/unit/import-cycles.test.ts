/**
 * No module of the repository imports itself back through others (type-only imports count: they tie
 * the designs together as much). The walker is scripts/import-cycles.ts (`npm run import-cycles`).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_DIRECTORIES, importCycles, importGraph } from '../../scripts/import-cycles.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('import cycles', () => {
  it('the repository has none (src, machines, projections, the sandbox package, tests, benches)', () => {
    const graph = importGraph(DEFAULT_DIRECTORIES.map((directory) => join(root, directory)));
    expect(graph.size).toBeGreaterThan(300);
    const inSandbox = [...graph.keys()].filter((file) => file.includes('/packages/sandbox/src/'));
    expect(inSandbox.length).toBeGreaterThan(20);
    const cycles = importCycles(graph).map((cycle) => cycle.map((file) => file.slice(root.length + 1)));
    expect(cycles).toEqual([]);
  });

  describe('the walker', () => {
    const fixture = mkdtempSync(join(tmpdir(), 'zapwire-import-cycles-'));
    afterAll(() => rmSync(fixture, { recursive: true, force: true }));
    const write = (path: string, text: string): void => {
      mkdirSync(dirname(join(fixture, path)), { recursive: true });
      writeFileSync(join(fixture, path), text);
    };
    // a → b → c → a (c's import is type-only, b's a re-export); d ↔ e through `import()`; f imports itself;
    // g imports a and a package and is in no cycle.
    write('a.ts', "import { b } from './b.ts';\nexport const a = b;\n");
    write('b.ts', "export { c as b } from './nested/c.ts';\n");
    write('nested/c.ts', "import type { A } from '../a.ts';\nexport const c = 1;\nexport type C = A;\n");
    write('d.ts', "export const d = () => import('./e.js');\n");
    write('e.ts', "import { d } from './d.ts';\nexport const e = d;\n");
    write('f.ts', "import * as self from './f.ts';\nexport const f = self;\n");
    write('g.ts', "import { a } from './a.ts';\nimport { z } from 'zod';\nexport const g = [a, z];\n");

    it('finds every cycle, type-only imports, re-exports and dynamic imports included', () => {
      const cycles = importCycles(importGraph([fixture])).map((cycle) =>
        cycle.map((file) => file.slice(fixture.length + 1)),
      );
      expect(cycles).toEqual([['a.ts', 'b.ts', 'nested/c.ts'], ['d.ts', 'e.ts'], ['f.ts']]);
    });

    it('reports nothing once the edges that close them are gone', () => {
      const graph = importGraph([fixture]);
      graph.set(join(fixture, 'nested/c.ts'), []);
      graph.set(join(fixture, 'e.ts'), []);
      graph.set(join(fixture, 'f.ts'), []);
      expect(importCycles(graph)).toEqual([]);
    });
  });
});
