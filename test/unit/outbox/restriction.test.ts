import { describe, expect, it } from 'vitest';
import { classifySendError, restrictionPauseMs } from '../../../src/runtime/outbox/restriction.ts';
import { SendRefusedError } from '../../../src/whatsapp/port.ts';
import { refusalOf, ServerAcks } from '../../../src/whatsapp/baileys/server-acks.ts';

describe('classifySendError', () => {
  it('reads 463 as a restriction that fails the send (sending it again is another reach-out)', () => {
    const verdict = classifySendError(
      new SendRefusedError('463', 'WhatsApp refused the message (error 463)'),
    );
    expect(verdict).toMatchObject({ kind: 'restricted', restriction: { code: '463', retrySend: false } });
  });

  it('reads a rate limit as a restriction whose send goes again after the pause', () => {
    const verdict = classifySendError(new SendRefusedError('429', 'rate-overlimit'));
    expect(verdict).toMatchObject({ kind: 'restricted', restriction: { code: '429', retrySend: true } });
  });

  it('reads a reach-out time lock by its words', () => {
    const verdict = classifySendError(new SendRefusedError('500', 'reachout timelock active'));
    expect(verdict).toMatchObject({ kind: 'restricted', restriction: { code: 'reachout_timelock' } });
  });

  it('fails the send alone for other refusals and errors', () => {
    expect(classifySendError(new SendRefusedError('479', 'smax-invalid'))).toEqual({
      kind: 'failed',
      code: '479',
      reason: 'smax-invalid',
    });
    expect(classifySendError(new Error('boom'))).toEqual({ kind: 'failed', code: 'error', reason: 'boom' });
  });

  it('doubles the pause for each restriction in a row, up to the maximum; a given wait wins', () => {
    const restriction = { code: '463', reason: '', retrySend: false };
    const policy = { baseMs: 1_000, maxMs: 5_000 };
    expect([1, 2, 3, 4].map((streak) => restrictionPauseMs(restriction, streak, policy))).toEqual([
      1_000, 2_000, 4_000, 5_000,
    ]);
    expect(restrictionPauseMs({ ...restriction, retryAfterMs: 3_000 }, 4, policy)).toBe(3_000);
  });
});

describe('ServerAcks (the Baileys adapter waits for the server to take its message)', () => {
  it('resolves on the ack, rejects on a refusal, and gives up quietly after the wait', async () => {
    const acks = new ServerAcks();
    const ok = acks.expect('A', 5_000);
    const refused = acks.expect('B', 5_000);
    const silent = acks.expect('C', 20);
    acks.settle({ id: 'A', class: 'message' });
    acks.settle({ id: 'B', class: 'message', error: '463' });
    await expect(ok).resolves.toBe('acknowledged');
    await expect(refused).rejects.toMatchObject({ name: 'SendRefusedError', code: '463' });
    await expect(silent).resolves.toBe('no-answer');
  });

  it("takes Baileys' rate-overlimit (429) for a refusal of the send", () => {
    const boom = Object.assign(new Error('rate-overlimit'), { output: { statusCode: 429 } });
    expect(refusalOf(boom)).toMatchObject({ code: '429' });
    expect(refusalOf(new Error('Connection Closed'))).toBeUndefined();
  });
});
