/**
 * /metrics on the whole app: one registry (src/metrics.ts) holds what each part registers in it, the
 * sinks, the read model and the cluster member, beside the process metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

describe('/metrics', () => {
  it("serves every part's series from the process's one registry", async () => {
    const created = await t.request('POST', '/instance/create', { body: { name: 'metered' } });
    expect(created.status).toBe(201);
    const metrics = await t.request('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    const body = String(metrics.body);
    // The read model's gauges (projections/metrics.ts).
    expect(body).toMatch(/^zapwire_instances\{state="created"\} 1$/m);
    expect(body).toMatch(/^zapwire_projection_poison_events\{projection="instances"\} 0$/m);
    // The cluster member's (src/cluster/metrics.ts): a cluster of one owns the new instance.
    expect(body).toMatch(/^zapwire_cluster_instances_owned\{node="[^"]+"\} 1$/m);
    // The sinks' (src/sinks/metrics.ts, and the webhook's queue gauges) and the process's.
    expect(body).toContain('# TYPE zapwire_sink_delivered_total counter');
    expect(body).toContain('# TYPE zapwire_webhook_queue_behind_events gauge');
    expect(body).toMatch(/^zapwire_process_cpu_user_seconds_total /m);
  });
});
