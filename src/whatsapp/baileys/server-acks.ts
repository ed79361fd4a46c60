/**
 * WhatsApp's server acknowledges every message a device sends with `<ack class="message" id=…>`; a refusal
 * carries `error` (463: the account may not start this chat, a reach-out time lock; 429: rate limit). Baileys
 * does nothing with a good acknowledgement and turns a refusal into a `messages.update` long after
 * `sendMessage` resolved; the outbox needs the verdict of its own send, so the connection waits here.
 */
import { SendRefusedError } from '../port.ts';

export const DEFAULT_SERVER_ACK_WAIT_MS = 10_000;

export type ServerAckOutcome = 'acknowledged' | 'no-answer';

interface Waiter {
  resolve(outcome: ServerAckOutcome): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class ServerAcks {
  private readonly waiting = new Map<string, Waiter>();

  /**
   * Resolves once the server acknowledged `messageId`, or with `no-answer` after `waitMs` (the stanza was
   * written: it may well have arrived); rejects with SendRefusedError when the server refused it.
   */
  expect(messageId: string, waitMs: number): Promise<ServerAckOutcome> {
    this.forget(messageId);
    return new Promise<ServerAckOutcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(messageId);
        resolve('no-answer');
      }, waitMs);
      timer.unref();
      this.waiting.set(messageId, { resolve, reject, timer });
    });
  }

  forget(messageId: string): void {
    const waiter = this.waiting.get(messageId);
    if (!waiter) return;
    clearTimeout(waiter.timer);
    this.waiting.delete(messageId);
    waiter.resolve('no-answer');
  }

  settle(attrs: Readonly<Record<string, string>>): void {
    const id = attrs['id'];
    const waiter = id === undefined ? undefined : this.waiting.get(id);
    if (!id || !waiter) return;
    clearTimeout(waiter.timer);
    this.waiting.delete(id);
    const error = attrs['error'];
    if (error) waiter.reject(new SendRefusedError(error, `WhatsApp refused the message (error ${error})`));
    else waiter.resolve('acknowledged');
  }

  /** The connection closed: nobody is going to answer. */
  clear(): void {
    for (const id of [...this.waiting.keys()]) this.forget(id);
  }
}

/**
 * Baileys reports WhatsApp's rate limit on the queries a send makes first (devices, group metadata) as a
 * Boom `rate-overlimit` with status 429: that is a refusal of the send too.
 */
export function refusalOf(error: unknown): SendRefusedError | undefined {
  if (!(error instanceof Error)) return undefined;
  const output = (error as { output?: { statusCode?: unknown } }).output;
  const data = (error as { data?: unknown }).data;
  if (error.message === 'rate-overlimit' || output?.statusCode === 429 || data === 429)
    return new SendRefusedError('429', `WhatsApp rate-limited the send (${error.message})`);
  return undefined;
}
