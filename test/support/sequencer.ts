/**
 * The order test files start in. Vitest starts the files it remembers as slowest first, but a clean clone
 * (CI) has no memory, and then a 40-second file that starts last is what the whole run waits for at its end.
 * The files measured slowest in a full run on 2 cores start first here, in this order; the rest follow in
 * Vitest's own order.
 */
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Slowest first (seconds in a full run on 2 cores with 4 workers, 2026-12-07). */
const SLOW_FIRST: readonly string[] = [
  'test/e2e/app/health.test.ts', // 61
  'test/e2e/cluster/three-nodes.test.ts', // 59
  'test/unit/machines/instance.model.test.ts', // 35 (CPU: slower the busier the machine)
  'test/integration/sinks/webhook-tls.test.ts', // 31
  'test/contract/embedded-postgres.test.ts', // 29
  'test/e2e/outbox/outbox.test.ts', // 28
  'test/integration/startup/server.test.ts', // 20
  'test/integration/security/delete-crash.test.ts', // 20
  'test/integration/startup/database-outage.test.ts', // 18
  'test/integration/sinks/webhook.test.ts', // 18
  'test/integration/security/route-fuzz.test.ts', // 17
  'test/integration/cluster/fencing.test.ts', // 17
  'test/contract/kurrentdb.test.ts', // 17
  'test/integration/startup/migrate-from-pglite.test.ts', // 16
];

export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (spec: TestSpecification): number => {
      const index = SLOW_FIRST.indexOf(relative(spec.project.config.root, spec.moduleId));
      return index === -1 ? SLOW_FIRST.length : index;
    };
    const ordered = await super.sort(files);
    return ordered
      .map((spec, position) => ({ spec, position }))
      .sort((a, b) => rank(a.spec) - rank(b.spec) || a.position - b.position)
      .map(({ spec }) => spec);
  }
}
