/**
 * A node that takes an instance's lease restores it in turn. A command may get there first: the node that
 * created the instance placed it here and forwarded the client's connect at once, before this node's next
 * heartbeat took the lease and queued the restore. That restore then found a connecting, unpaired instance
 * and abandoned it, closing the socket the connect had opened. The restore now leaves an instance with a
 * socket in this process alone. The late lease is played here by adopting the instance once more.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrlForDataDir } from '../../support/postgres.ts';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let app: TestApp | undefined;
afterAll(async () => {
  await app?.stop().catch(() => undefined);
});

describe('a restore that comes after a command', () => {
  it('keeps the socket the connect opened, which then shows its QR', async () => {
    const started = await startTestApp({
      env: {
        DATABASE_URL: await databaseUrlForDataDir(mkdtempSync(join(tmpdir(), 'zapwire-restore-after-'))),
        CLUSTER_ENABLED: 'true',
        CLUSTER_SECRET: 'cluster-secret-for-tests-0123456789abcdef',
      },
    });
    app = started;
    const runtime = started.zapwire.runtime;
    const token = 'connect-before-restore-abcdef';
    const created = await started.request('POST', '/instance/create', { body: { name: 'cbr', token } });
    expect(created.status).toBe(201);
    const id = created.body['id'] as string;
    await eventually(() => started.zapwire.cluster.holds(id) && runtime.restoreProgress().finished, 10_000);

    const connected = await started.request('POST', '/instance/connect', { apikey: token });
    expect(connected.status, JSON.stringify(connected.body)).toBe(200);
    const connection = await eventually(() => started.fake.connection(id));

    runtime.adopt(id);
    await eventually(() => runtime.restoreProgress().finished, 10_000);
    expect(connection.live).toBe(true);
    expect(started.fake.liveCount(id)).toBe(1);

    connection.issueQr();
    await expect
      .poll(async () => (await started.request('GET', '/instance/status', { apikey: token })).body['state'])
      .toBe('qr');
  }, 60_000);
});
