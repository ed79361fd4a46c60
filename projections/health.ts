/** What /health says about the projections: anonymous callers read it, so counts only. */
import type { ProjectionRunner } from './runner.ts';

/** One line per projection that skipped events (stream names hold token hashes; errors name tables). */
export async function projectionAlerts(
  projections: Pick<ProjectionRunner, 'poisonCounts'>,
): Promise<string[]> {
  return [...(await projections.poisonCounts())]
    .filter(([, n]) => n > 0)
    .map(
      ([projection, n]) =>
        `projection ${projection} skipped ${n} event(s) it could not apply; see the server log and GET /admin/dead-letters?subscription=projection:${projection}`,
    );
}
