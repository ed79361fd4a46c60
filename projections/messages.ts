import type { WhatsAppEventMap } from '../src/domain/events.ts';
import {
  AUDIT_STREAM,
  INSTANCE_STREAM_PREFIX,
  WHATSAPP_STREAM_PREFIX,
  instanceIdOfStream,
} from '../src/domain/events.ts';
import type { SqlDatabase } from '../src/store/sql.ts';
import { projectionSubscription, type Projection } from './projection.ts';

/**
 * Messages and labels of every instance; both are removed with the instance. Opt-in (MESSAGES_PROJECTION):
 * no route reads these tables, and each inbound message would cost a read-model write.
 */
export const messagesProjection: Projection = {
  name: 'messages',
  filter: { streamPrefixes: [WHATSAPP_STREAM_PREFIX, INSTANCE_STREAM_PREFIX, AUDIT_STREAM] },
  tables: ['rm_messages', 'rm_labels'],
  async apply(tx, event) {
    const instanceId = instanceIdOfStream(event.stream);
    switch (event.type) {
      case 'MessageReceived': {
        const m = event.data as unknown as WhatsAppEventMap['MessageReceived'];
        await tx.query(
          `INSERT INTO rm_messages (instance_id, message_id, chat_jid, sender_jid, from_me, message_type, text, status,
             push_name, timestamp, updated_at)
           VALUES ($1, $2, $3, $4, false, $5, $6, 'received', $7, $8, $9) ON CONFLICT DO NOTHING`,
          [
            instanceId,
            m.messageId,
            m.chatJid,
            m.senderJid,
            m.messageType,
            m.text,
            m.pushName,
            m.timestamp,
            m.at,
          ],
        );
        return;
      }
      case 'MessageSent': {
        const m = event.data as unknown as WhatsAppEventMap['MessageSent'];
        await tx.query(
          `INSERT INTO rm_messages (instance_id, message_id, chat_jid, sender_jid, from_me, message_type, text, status,
             timestamp, updated_at)
           VALUES ($1, $2, $3, NULL, true, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
          [instanceId, m.messageId, m.chatJid, m.messageType, m.text, m.status, m.timestamp, m.at],
        );
        return;
      }
      case 'MessageUpdated': {
        const m = event.data as unknown as WhatsAppEventMap['MessageUpdated'];
        if (m.deleted) {
          await tx.query(
            `UPDATE rm_messages SET text = NULL, status = 'deleted', updated_at = $3 WHERE instance_id = $1 AND message_id = $2`,
            [instanceId, m.messageId, m.at],
          );
        } else if (m.status) {
          await tx.query(
            `UPDATE rm_messages SET status = $3, updated_at = $4 WHERE instance_id = $1 AND message_id = $2`,
            [instanceId, m.messageId, m.status, m.at],
          );
        }
        return;
      }
      case 'LabelUpdated': {
        const l = event.data as unknown as WhatsAppEventMap['LabelUpdated'];
        if (l.deleted) {
          await tx.query('DELETE FROM rm_labels WHERE instance_id = $1 AND label_id = $2', [
            instanceId,
            l.labelId,
          ]);
        } else {
          await tx.query(
            `INSERT INTO rm_labels (instance_id, label_id, name, color, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (instance_id, label_id) DO UPDATE SET name = EXCLUDED.name, color = EXCLUDED.color,
               updated_at = EXCLUDED.updated_at`,
            [instanceId, l.labelId, l.name, l.color, l.at],
          );
        }
        return;
      }
      case 'InstanceDeleted':
      case 'InstanceDeletionAudited': {
        const id = event.type === 'InstanceDeleted' ? instanceId : String(event.data['instanceId']);
        await tx.query('DELETE FROM rm_messages WHERE instance_id = $1', [id]);
        await tx.query('DELETE FROM rm_labels WHERE instance_id = $1', [id]);
        return;
      }
      default:
        return;
    }
  },
};

/**
 * With the projection off, its tables are emptied and its position forgotten: message content of an instance
 * deleted meanwhile must not stay behind, and turning it on again rebuilds it from the start of the log.
 */
export async function clearMessagesReadModel(db: SqlDatabase): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('DELETE FROM rm_messages');
    await tx.query('DELETE FROM rm_labels');
    await tx.query('DELETE FROM es_subscriptions WHERE subscription_id = $1', [
      projectionSubscription(messagesProjection.name),
    ]);
  });
}
