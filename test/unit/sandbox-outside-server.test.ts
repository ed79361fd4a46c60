/**
 * The WhatsApp sandbox is a package of its own (packages/sandbox) for tests, benchmarks and local runs:
 * no server source imports it, so the build (src, machines, projections → dist/) holds none of it, and
 * the Docker build context leaves the package out.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { importSpecifiers, typeScriptFiles } from '../../scripts/import-cycles.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const serverSources = ['src', 'machines', 'projections'].flatMap((d) => typeScriptFiles(join(root, d)));

it('no source the server is built from is part of the sandbox', () => {
  expect(serverSources.length).toBeGreaterThan(100);
  const sandboxModules = serverSources.filter((file) =>
    /export (async )?function startSandbox\b|export class SandboxServer\b/.test(readFileSync(file, 'utf8')),
  );
  expect(sandboxModules.map((file) => relative(root, file))).toEqual([]);
});

it('no source the server is built from imports the sandbox', () => {
  const sources = serverSources;
  const offending = sources.flatMap((file) =>
    importSpecifiers(file)
      .filter(
        (specifier) =>
          specifier.startsWith('@zapwire/sandbox') ||
          (specifier.startsWith('.') &&
            relative(root, resolve(dirname(file), specifier)).startsWith(join('packages', 'sandbox'))),
      )
      .map((specifier) => `${relative(root, file)} imports ${specifier}`),
  );
  expect(offending).toEqual([]);
});

it('the Docker build context leaves the sandbox package out', () => {
  const ignored = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  expect(ignored).toContain('packages');
});
