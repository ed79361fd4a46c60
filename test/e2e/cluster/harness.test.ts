/**
 * The multi-process harness itself: real node processes and a sandbox process start, answer, pair an
 * instance with the sandbox, survive SIGKILL/SIGSTOP/restart, and leave no process behind.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOnce, startCluster, type TestCluster } from '../../support/cluster.ts';

let cluster: TestCluster | undefined;

beforeAll(() => buildOnce(), 240_000);
afterAll(async () => {
  await cluster?.close();
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Process state letter from ps (T = stopped), or undefined when gone. */
const stateOf = (pid: number): string | undefined => {
  try {
    return execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim()[0];
  } catch {
    return undefined;
  }
};

describe('cluster harness', () => {
  it('starts nodes and a sandbox, pairs an instance, kills, pauses, restarts and cleans up', async () => {
    cluster = await startCluster({ nodes: 2 });
    const [one, two] = cluster.nodes as [
      NonNullable<TestCluster['nodes'][0]>,
      NonNullable<TestCluster['nodes'][0]>,
    ];
    expect((await one.request('GET', '/health')).status).toBe(200);
    expect((await two.request('GET', '/health')).status).toBe(200);

    // Pair one instance through the sandbox: QR from the API, scanned by the simulated phone.
    await cluster.sandbox.createAccount('5511900000001', 'Sales');
    const created = await one.request('POST', '/instance/create', { body: { name: 'harness' } });
    expect(created.status).toBe(201);
    expect(
      (await one.request('POST', '/instance/connect', { body: { instanceName: 'harness' } })).status,
    ).toBe(200);
    await expect
      .poll(async () => (await one.request('GET', '/instance/qr?instanceName=harness')).status, {
        timeout: 30_000,
      })
      .toBe(200);
    const qr = (await one.request<{ code: string }>('GET', '/instance/qr?instanceName=harness')).body.code;
    await cluster.sandbox.scanQr('5511900000001', qr);
    await expect
      .poll(
        async () =>
          (await two.request<{ state: string }>('GET', '/instance/status?instanceName=harness')).body.state,
        {
          timeout: 30_000,
        },
      )
      .toBe('open');
    const devices = await cluster.sandbox.deviceConnections();
    expect(devices).toHaveLength(1);
    expect(devices[0]).toMatchObject({ online: true, replaced: 0 });

    // SIGKILL: the process is gone, and its socket with it.
    const firstPid = one.pid!;
    await one.kill();
    expect(alive(firstPid)).toBe(false);
    await expect
      .poll(async () => (await cluster!.sandbox.deviceConnections())[0]?.online, { timeout: 10_000 })
      .toBe(false);
    await one.start();
    expect(one.pid).not.toBe(firstPid);
    expect((await one.request('GET', '/health')).status).toBe(200);

    // SIGSTOP/SIGCONT pause and resume the whole group.
    two.signal('SIGSTOP');
    await expect.poll(() => stateOf(two.pid!), { timeout: 5_000 }).toBe('T');
    two.signal('SIGCONT');
    await expect.poll(() => stateOf(two.pid!), { timeout: 5_000 }).not.toBe('T');
    expect((await two.request('GET', '/health')).status).toBe(200);

    // SIGTERM: a clean exit.
    expect(await two.terminate()).toBe(0);

    const pids = [one.pid!, two.pid!];
    await cluster.close();
    cluster = undefined;
    for (const pid of pids) expect(alive(pid)).toBe(false);
  }, 240_000);
});
