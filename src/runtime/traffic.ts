/**
 * WhatsApp traffic: messages, receipts, calls and the rest go to the instance's `wa-` stream (the
 * lifecycle machine never sees them), after the ignoreGroups / ignoreStatus filter; then the automatic
 * replies the settings ask for (mark as read, reject a call with a message). Also records what the API
 * sends.
 */
import type { AdvancedSettings, WhatsAppEvent } from '../domain/events.ts';
import { isIgnoredBySettings } from '../domain/traffic-filter.ts';
import type { AppendResult } from '../store/port.ts';
import type { WhatsAppConnection } from '../whatsapp/port.ts';
import { toNewEvent } from './actor-host.ts';
import { errorMessage, type RuntimeLog } from './runtime-log.ts';
import type { WhatsAppStreams } from './whatsapp-stream.ts';

export interface TrafficOptions {
  /** The `wa-` streams (closed for an instance being deleted). */
  readonly streams: Pick<WhatsAppStreams, 'append' | 'isClosed'>;
  readonly log: RuntimeLog;
  /** The instance's live connection, for the automatic replies. */
  readonly connection: (instanceId: string) => WhatsAppConnection | undefined;
  readonly now: () => Date;
}

export interface SentText {
  readonly id: string;
  readonly timestamp: string;
  readonly status: string;
}

export class Traffic {
  constructor(private readonly options: TrafficOptions) {}

  /** Records one event of an instance's traffic and answers it as its settings say. */
  async received(instanceId: string, event: WhatsAppEvent, settings: AdvancedSettings): Promise<void> {
    if (isIgnoredBySettings(event, settings) || this.options.streams.isClosed(instanceId)) return;
    await this.options.streams.append(instanceId, [toNewEvent(event)]);
    const connection = this.options.connection(instanceId);
    if (!connection) return;
    const { log } = this.options;
    if (event.type === 'MessageReceived' && settings.readMessages) {
      await connection
        .markRead(event.data.chatJid, [event.data.messageId], event.data.senderJid)
        .catch((error: unknown) =>
          log.write(instanceId, 'warn', 'could not mark a message as read', { error: errorMessage(error) }),
        );
    }
    if (event.type === 'CallReceived' && event.data.status === 'offer' && settings.rejectCall) {
      try {
        await connection.rejectCall(event.data.callId, event.data.fromJid);
        if (settings.msgRejectCall) {
          const sent = await connection.sendText(event.data.fromJid, settings.msgRejectCall);
          await this.sent(instanceId, event.data.fromJid, settings.msgRejectCall, sent);
        }
      } catch (error) {
        await log.write(instanceId, 'warn', 'could not reject a call', { error: errorMessage(error) });
      }
    }
  }

  /** Records a text the instance sent (through the API or as an automatic reply). */
  sent(instanceId: string, chatJid: string, text: string, sent: SentText): Promise<AppendResult> {
    return this.sentAll(instanceId, [{ to: chatJid, text, sent }]);
  }

  /** Records texts the instance sent, in one append (the outbox's group of acknowledged sends). */
  sentAll(
    instanceId: string,
    sends: ReadonlyArray<{ readonly to: string; readonly text: string; readonly sent: SentText }>,
  ): Promise<AppendResult> {
    const at = this.options.now().toISOString();
    return this.options.streams.append(
      instanceId,
      sends.map(({ to, text, sent }) => ({
        type: 'MessageSent',
        data: {
          at,
          messageId: sent.id,
          chatJid: to,
          messageType: 'text',
          text,
          timestamp: sent.timestamp,
          status: sent.status,
        },
      })),
    );
  }
}
