/**
 * Whatever a receiver's TLS does, the webhook sender answers with a failed attempt and the process lives
 * on. A certificate for another name, on a pipelined connection, used to throw an AssertionError from
 * undici's socket callback (the process exited) or leave the connection's requests unsettled.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebhookSender, type SendResult } from '../../../src/sinks/webhook/sender.ts';
import {
  TLS_FAILURES,
  TlsReceiver,
  makeTestPki,
  type TestPki,
  type TlsMode,
} from '../../support/tls-receiver.ts';

let pki: TestPki;
let receiver: TlsReceiver;
let sender: WebhookSender | undefined;
const uncaught: unknown[] = [];
const record = (error: unknown): void => {
  uncaught.push(error);
};

beforeAll(async () => {
  pki = makeTestPki();
  receiver = await TlsReceiver.start(pki);
  process.on('uncaughtException', record);
  process.on('unhandledRejection', record);
});
afterAll(async () => {
  process.off('uncaughtException', record);
  process.off('unhandledRejection', record);
  await receiver.close();
  pki.remove();
});
afterEach(() => {
  sender?.close();
  sender = undefined;
});

const EXPECTED_ERROR: Record<Exclude<TlsMode, 'ok'>, RegExp> = {
  'wrong-name': /altnames/i,
  expired: /expired/i,
  'self-signed': /self.signed/i,
  'unknown-ca': /unable to (get|verify)|issuer/i,
  'handshake-reset': /ECONNRESET|socket|closed|disconnected/i,
};

/** Sends from two ordered keys, three requests every 20 ms for `rounds` rounds, without waiting for answers. */
async function burst(host: string, rounds: number): Promise<SendResult[]> {
  const sent: Promise<SendResult>[] = [];
  let n = 0;
  for (let round = 0; round < rounds; round += 1) {
    for (let i = 0; i < 3; i += 1) {
      n += 1;
      sent.push(
        sender!.send({
          url: receiver.url(host),
          body: `{"n":${n}}`,
          headers: {},
          timeoutMs: 15_000,
          orderKey: `k${n % 2}`,
        }),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Promise.all(sent);
}

describe('WebhookSender against a failing TLS receiver, pipelined', () => {
  for (const failure of TLS_FAILURES) {
    for (const host of ['localhost', '127.0.0.1']) {
      it(`${failure} (${host}): every request fails with the reason, none hangs, the process lives, and the same queues deliver once TLS is fixed`, async () => {
        sender = new WebhookSender({ pipelining: 8, extraCaCertificates: [pki.ca] });
        receiver.mode(failure);
        const failed = await burst(host, 40);
        expect(failed).toHaveLength(120);
        expect(failed.filter((r) => r.ok)).toEqual([]);
        const reasons = new Set(failed.map((r) => (r.ok ? '' : r.error)));
        for (const reason of reasons) expect(reason).toMatch(EXPECTED_ERROR[failure]);
        expect(uncaught).toEqual([]);

        receiver.mode('ok');
        const before = receiver.bodies.length;
        const healed = await burst(host, 10);
        expect(healed.filter((r) => !r.ok)).toEqual([]);
        expect(receiver.bodies.length - before).toBe(healed.length);
        expect(uncaught).toEqual([]);
      });
    }
  }

  it('the valid certificate is accepted through the extra CA, and refused without it', async () => {
    receiver.mode('ok');
    sender = new WebhookSender({ pipelining: 8 });
    const untrusted = await sender.send({
      url: receiver.url(),
      body: '{}',
      headers: {},
      timeoutMs: 2_000,
      orderKey: 'x',
    });
    expect(untrusted.ok).toBe(false);
    sender.close();
    sender = new WebhookSender({ pipelining: 8, extraCaCertificates: [pki.ca] });
    const trusted = await sender.send({
      url: receiver.url(),
      body: '{}',
      headers: {},
      timeoutMs: 2_000,
      orderKey: 'x',
    });
    expect(trusted).toMatchObject({ ok: true, statusCode: 200 });
  });
});
