/**
 * The webhook sender on its own, against a real HTTP receiver: ordered keys, pipelining, and the bound on
 * connections per receiver.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebhookSender, type SendResult } from '../../../src/sinks/webhook/sender.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';

let receiver: WebhookReceiver;
let sender: WebhookSender | undefined;

beforeEach(async () => {
  receiver = await WebhookReceiver.start();
});
afterEach(async () => {
  sender?.close();
  sender = undefined;
  await receiver.close();
});

const post = (key: string, body: string): Promise<SendResult> =>
  sender!.send({ url: receiver.url('/hook'), body, headers: {}, timeoutMs: 5_000, orderKey: key });

describe('WebhookSender', () => {
  it('one connection per key, each pipelined in order', async () => {
    sender = new WebhookSender({ pipelining: 4 });
    receiver.respond({ status: 200, delayMs: 20 });
    const results = await Promise.all(
      ['a', 'b'].flatMap((key) => Array.from({ length: 6 }, (_, i) => post(key, `"${key}${i}"`))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    const portsOf = (key: string): Set<number> =>
      new Set(receiver.requests.filter((r) => r.rawBody.includes(key)).map((r) => r.remotePort));
    expect(portsOf('a').size).toBe(1);
    expect(portsOf('b').size).toBe(1);
    expect([...portsOf('a')][0]).not.toBe([...portsOf('b')][0]);
    for (const key of ['a', 'b']) {
      expect(receiver.requests.map((r) => r.rawBody).filter((b) => b.includes(key))).toEqual(
        Array.from({ length: 6 }, (_, i) => `"${key}${i}"`),
      );
    }
  });

  it('beyond maxConnectionsPerOrigin, keys share connections and each keeps its order', async () => {
    sender = new WebhookSender({ pipelining: 4, maxConnectionsPerOrigin: 2 });
    receiver.respond({ status: 200, delayMs: 10 });
    const keys = ['a', 'b', 'c', 'd', 'e'];
    const results = await Promise.all(
      keys.flatMap((key) => Array.from({ length: 5 }, (_, i) => post(key, `"${key}${i}"`))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(receiver.requests).toHaveLength(25);
    expect(new Set(receiver.requests.map((r) => r.remotePort)).size).toBe(2);
    for (const key of keys) {
      expect(receiver.requests.map((r) => r.rawBody).filter((b) => b.includes(key))).toEqual(
        Array.from({ length: 5 }, (_, i) => `"${key}${i}"`),
      );
    }
  });

  it('a receiver that closes the connection after every answer still gets everything, first copies in order', async () => {
    sender = new WebhookSender({ pipelining: 8 });
    receiver.respond({ status: 200, headers: { connection: 'close' } });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => post('a', `"a${i}"`)));
    expect(results.map((r) => r.ok)).toEqual(Array.from({ length: 8 }, () => true));
    // Requests the receiver read before it closed may come again (same body): delivery is at least once.
    const bodies = receiver.requests.map((r) => r.rawBody);
    expect([...new Set(bodies)]).toEqual(Array.from({ length: 8 }, (_, i) => `"a${i}"`));
  });
});
