import { defineConfig } from 'vitest/config';

// `npm test -w @zapwire/sandbox`: the sandbox's own tests need no database or broker, only the package.
// From the repository root, `npm test` runs them with everything else (the root vitest.config.ts).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 3,
  },
});
