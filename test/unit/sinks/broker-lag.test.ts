import { describe, expect, it } from 'vitest';
import { BrokerLag } from '../../../src/sinks/broker-lag.ts';
import type { RoutedEvent } from '../../../src/sinks/subscription.ts';
import type { RecordedEvent, Subscription } from '../../../src/store/port.ts';
import { sinks as settings } from '../../integration/sinks/support/fixtures.ts';

const compare = (a: string, b: string): number => Number(a) - Number(b);

function event(instanceId: string, position: number, type = 'MessageReceived'): RecordedEvent {
  return {
    id: `e${position}`,
    stream: `wa-${instanceId}`,
    type,
    data: { messageId: `m${position}`, text: 'hi', fromMe: false },
    metadata: {},
    streamPosition: position,
    position: String(position),
    createdAt: new Date(),
  } as unknown as RecordedEvent;
}

function setup() {
  let position = '0';
  let now = 1_000_000;
  const subscription = { position: () => position } as unknown as Subscription;
  const lag = new BrokerLag('rabbitmq', compare, () => now);
  lag.attach(subscription);
  lag.activeChanged(true);
  const learn = (instanceId: string, rabbitmqEnable: boolean) =>
    lag.learned([
      {
        event: event(instanceId, 0),
        name: 'MESSAGES_UPSERT',
        instance: {
          id: instanceId,
          name: instanceId,
          deleted: false,
          sinks: settings({ rabbitmqEnable, events: ['MESSAGE'] }),
        },
      } as unknown as RoutedEvent,
    ]);
  return {
    lag,
    learn,
    passTo: (p: number) => (position = String(p)),
    advance: (ms: number) => (now += ms),
  };
}

describe('BrokerLag', () => {
  it('counts the instance events the sink has not passed, and since when the oldest waits', () => {
    const t = setup();
    t.learn('a', true);
    t.lag.appended(event('a', 1));
    t.advance(5_000);
    t.lag.appended(event('a', 2));
    t.lag.appended(event('a', 3));
    expect(t.lag.lagOf('a')).toEqual({
      sink: 'rabbitmq',
      behind: 3,
      oldestUndeliveredAt: new Date(1_000_000),
      why: null,
    });
    t.lag.pauseChanged('connection refused');
    t.passTo(1);
    expect(t.lag.lagOf('a')).toMatchObject({ behind: 2, oldestUndeliveredAt: new Date(1_005_000) });
    expect(t.lag.lagOf('a')?.why).toBe('connection refused');
    t.passTo(3);
    expect(t.lag.lagOf('a')).toBeUndefined();
  });

  it('leaves out instances that do not use the sink, events they do not want, and a sink run elsewhere', () => {
    const t = setup();
    t.learn('off', false);
    t.lag.appended(event('off', 1));
    expect(t.lag.lagOf('off')).toBeUndefined();
    t.lag.appended(event('unknown', 2));
    expect(t.lag.lagOf('unknown')).toBeUndefined();
    t.learn('on', true);
    t.lag.appended(event('on', 3, 'PresenceUpdated'));
    expect(t.lag.lagOf('on')).toBeUndefined();
    t.lag.appended(event('on', 4));
    expect(t.lag.lagOf('on')?.behind).toBe(1);
    t.lag.activeChanged(false);
    expect(t.lag.lagOf('on')).toBeUndefined();
  });

  it('keeps counting past the events it keeps, and clears once the sink passed the newest', () => {
    const t = setup();
    t.learn('busy', true);
    for (let p = 1; p <= 10_005; p++) t.lag.appended(event('busy', p));
    expect(t.lag.lagOf('busy')?.behind).toBe(10_005);
    t.passTo(10_000);
    expect(t.lag.lagOf('busy')?.behind).toBe(5);
    t.passTo(10_005);
    expect(t.lag.lagOf('busy')).toBeUndefined();
  });
});
