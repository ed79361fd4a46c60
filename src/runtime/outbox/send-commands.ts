/**
 * The send commands of the API, through the instance's outbox: record, then wait for WhatsApp's answer
 * (a synchronous answer by default), or answer that the send is accepted and let the caller follow it.
 */
import { Errors } from '../../domain/errors.ts';
import type { SendContent, SendPacing } from '../../domain/outbox.ts';
import { apiStateOf } from '../../../machines/instance/index.ts';
import type { LiveSnapshot } from '../actor-host.ts';
import { normaliseRecipient } from '../recipient.ts';
import type { SendOutcome, SendTextOptions } from '../service.ts';
import type { OutboxStatus, SendView } from './instance-outbox.ts';
import { requestHash } from './request-hash.ts';
import type { SendOutbox } from './send-outbox.ts';

export interface SendCommandsOptions {
  readonly outbox: SendOutbox;
  readonly snapshot: (instanceId: string) => Promise<LiveSnapshot>;
  /** Takes one action of the instance's send bucket (a 429 beyond). */
  readonly limit: (instanceId: string) => void;
  /** Takes one action of the instance's settings bucket. */
  readonly limitSettings: (instanceId: string) => void;
  /** How long a send route waits for WhatsApp's answer before it answers 202 (SEND_WAIT_MS). */
  readonly waitMs: number;
}

export class SendCommands {
  constructor(private readonly options: SendCommandsOptions) {}

  async sendText(
    id: string,
    number: string,
    text: string,
    options: SendTextOptions = {},
  ): Promise<SendOutcome> {
    const to = normaliseRecipient(number);
    const { delayMs = 0, idempotencyKey, sendAt, waitMs, messageId } = options;
    const mentions = options.mentions?.map(normaliseRecipient);
    const snapshot = await this.options.snapshot(id);
    this.options.limit(id);
    const content: SendContent = {
      kind: 'text',
      text,
      ...(options.quoted ? { quoted: options.quoted } : {}),
      ...(mentions ? { mentions } : {}),
      ...(options.mentionAll ? { mentionAll: true } : {}),
      ...(delayMs > 0 ? { typingMs: delayMs } : {}),
    };
    const hash = idempotencyKey
      ? requestHash({ route: 'text', to, content, sendAt: sendAt?.toISOString(), messageId })
      : null;
    const outbox = this.options.outbox.of(id);
    // A repeat answers with the first request's send, whatever the connection does now.
    const repeat = idempotencyKey ? await outbox.repeatOf(idempotencyKey, hash) : undefined;
    if (!repeat && !sendAt && apiStateOf(snapshot) !== 'open')
      throw snapshot.context.paired ? Errors.clientDisconnected() : Errors.noActiveSession();
    const send =
      repeat ??
      (
        await outbox.submit({
          to,
          content,
          sendAt: sendAt ?? null,
          idempotencyKey: idempotencyKey ?? null,
          requestHash: hash,
          ...(messageId ? { messageId } : {}),
        })
      ).send;
    const settled = (await outbox.settled(send.sendId, waitMs ?? this.options.waitMs)) ?? send;
    return outcomeOf(settled);
  }

  async send(id: string, sendId: string): Promise<SendView> {
    const view = await this.options.outbox.of(id).view(sendId);
    if (!view) throw Errors.sendNotFound(sendId);
    return view;
  }

  async cancel(id: string, sendId: string): Promise<SendView> {
    const view = await this.options.outbox.of(id).cancel(sendId);
    if (!view) throw Errors.sendNotFound(sendId);
    return view;
  }

  async status(id: string): Promise<OutboxStatus> {
    const outbox = this.options.outbox.of(id);
    await outbox.ready;
    return outbox.status();
  }

  pacing(id: string): Promise<SendPacing> {
    return this.options.outbox.of(id).pacing();
  }

  changePacing(id: string, patch: Partial<SendPacing>): Promise<SendPacing> {
    this.options.limitSettings(id);
    return this.options.outbox.of(id).changePacing(patch);
  }
}

/** Sent: the message; failed: the reason, as an error; anything else: accepted (202), follow it by id. */
export function outcomeOf(view: SendView): SendOutcome {
  if (view.state === 'sent' && view.sent)
    return {
      state: 'sent',
      message: {
        id: view.messageId,
        status: view.sent.status,
        timestamp: view.sent.timestamp,
        to: view.to,
        sendId: view.sendId,
        ...(view.sent.mentions ? { mentions: view.sent.mentions } : {}),
      },
    };
  if (view.state === 'failed' && view.failure)
    throw Errors.sendFailed(view.sendId, view.failure.code, view.failure.reason);
  return { state: 'accepted', send: view };
}
