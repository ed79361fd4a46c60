import { describe, expect, it } from 'vitest';
import { closeMessage } from '../../../machines/instance/decisions.ts';
import { decide, foldInstance, instanceMachine, restoreSnapshot } from '../../../machines/instance/index.ts';
import { DEFAULT_ADVANCED_SETTINGS, DEFAULT_SINK_SETTINGS } from '../../../src/domain/events.ts';

describe('close messages', () => {
  it('are recorded without URL credentials and bounded', () => {
    expect(closeMessage('proxy failed: socks5://user:s3cret@proxy.local:1080 refused')).toBe(
      'proxy failed: socks5://[redacted]@proxy.local:1080 refused',
    );
    expect(closeMessage('x'.repeat(1000))).toHaveLength(300);
  });

  it('travel on ConnectionClosed when the connection gave one', () => {
    const at = '2026-11-29T00:00:00.000Z';
    const folded = foldInstance([
      {
        type: 'InstanceCreated',
        data: {
          at,
          instanceId: 'i1',
          name: 'n',
          createdBy: 'admin',
          advancedSettings: DEFAULT_ADVANCED_SETTINGS,
          sinks: DEFAULT_SINK_SETTINGS,
          proxy: null,
        },
      },
    ]);
    let snapshot = restoreSnapshot(instanceMachine, folded);
    snapshot = decide(snapshot, { type: 'connect', at }).nextSnapshot;
    const { emitted } = decide(snapshot, {
      type: 'wa.closed',
      code: null,
      message: 'proxy failed (http proxy h:1)',
      at,
    });
    const closed = emitted.find((e) => e.type === 'ConnectionClosed');
    expect(closed?.data).toMatchObject({ message: 'proxy failed (http proxy h:1)', willReconnect: true });
  });
});
