import type { RecordedEvent } from '../src/store/port.ts';
import type { SqlExecutor } from '../src/store/sql.ts';
import type {
  AdvancedSettings,
  AuditEventMap,
  InstanceEventMap,
  ReservationEventMap,
  SinkSettings,
} from '../src/domain/events.ts';
import {
  AUDIT_STREAM,
  DEFAULT_ADVANCED_SETTINGS,
  INSTANCE_STREAM_PREFIX,
  instanceIdOfStream,
  pickAdvancedSettings,
} from '../src/domain/events.ts';
import type { Projection } from './projection.ts';

/** Removes every read-model row of an instance (all projections' tables). */
export async function deleteInstanceRows(tx: SqlExecutor, instanceId: string): Promise<void> {
  await tx.query('DELETE FROM rm_instances WHERE id = $1', [instanceId]);
  await tx.query('DELETE FROM rm_instance_tokens WHERE instance_id = $1', [instanceId]);
}

async function update(tx: SqlExecutor, event: RecordedEvent, sets: Record<string, unknown>): Promise<void> {
  const id = instanceIdOfStream(event.stream);
  const columns = Object.keys(sets);
  const assignments = columns.map((c, i) => `${c} = $${i + 3}`).join(', ');
  await tx.query(
    `UPDATE rm_instances SET ${assignments}${columns.length ? ', ' : ''}updated_at = $2, stream_version = GREATEST(stream_version, ${event.streamPosition}) WHERE id = $1`,
    [id, event.createdAt, ...columns.map((c) => sets[c])],
  );
}

function sinkColumns(sinks: SinkSettings): Record<string, unknown> {
  return {
    webhook_url: sinks.webhookUrl,
    events: JSON.stringify(sinks.events),
    rabbitmq_enable: sinks.rabbitmqEnable,
    websocket_enable: sinks.websocketEnable,
    nats_enable: sinks.natsEnable,
  };
}

const clearQr = { qr_code: null, qr_expires_at: null, pairing_code: null, pairing_phone: null };

export const instancesProjection: Projection = {
  name: 'instances',
  filter: { streamPrefixes: [INSTANCE_STREAM_PREFIX, 'token-', AUDIT_STREAM] },
  tables: ['rm_instances', 'rm_instance_tokens', 'rm_instance_audit'],
  async apply(tx, event) {
    const d = event.data;
    switch (event.type) {
      case 'InstanceCreated': {
        const c = d as unknown as InstanceEventMap['InstanceCreated'];
        await tx.query(
          `INSERT INTO rm_instances (id, name, state, advanced_settings, proxy, webhook_url, events, rabbitmq_enable,
             websocket_enable, nats_enable, stream_version, created_at, updated_at)
           VALUES ($1, $2, 'created', $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
           ON CONFLICT (id) DO NOTHING`,
          [
            c.instanceId,
            c.name,
            JSON.stringify({ ...DEFAULT_ADVANCED_SETTINGS, ...pickAdvancedSettings(c.advancedSettings) }),
            c.proxy ? JSON.stringify(c.proxy) : null,
            c.sinks.webhookUrl,
            JSON.stringify(c.sinks.events),
            c.sinks.rabbitmqEnable,
            c.sinks.websocketEnable,
            c.sinks.natsEnable,
            event.streamPosition,
            c.at,
          ],
        );
        await tx.query(
          `INSERT INTO rm_instance_audit (instance_id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
          [c.instanceId, c.name, c.at],
        );
        return;
      }
      case 'InstanceTokenAssigned': {
        const t = d as unknown as ReservationEventMap['InstanceTokenAssigned'];
        await tx.query(
          `INSERT INTO rm_instance_tokens (token_hash, instance_id) VALUES ($1, $2)
           ON CONFLICT (token_hash) DO UPDATE SET instance_id = EXCLUDED.instance_id`,
          [t.tokenHash, t.instanceId],
        );
        return;
      }
      case 'InstanceTokenRevoked': {
        const t = d as unknown as ReservationEventMap['InstanceTokenRevoked'];
        await tx.query('DELETE FROM rm_instance_tokens WHERE token_hash = $1 AND instance_id = $2', [
          t.tokenHash,
          t.instanceId,
        ]);
        return;
      }
      case 'EventSinksConfigured':
        return update(
          tx,
          event,
          sinkColumns((d as unknown as InstanceEventMap['EventSinksConfigured']).sinks),
        );
      case 'AdvancedSettingsChanged': {
        const settings: AdvancedSettings = {
          ...DEFAULT_ADVANCED_SETTINGS,
          ...pickAdvancedSettings((d as unknown as InstanceEventMap['AdvancedSettingsChanged']).settings),
        };
        return update(tx, event, { advanced_settings: JSON.stringify(settings) });
      }
      case 'ProxyConfigured':
        return update(tx, event, {
          proxy: JSON.stringify((d as unknown as InstanceEventMap['ProxyConfigured']).proxy),
        });
      case 'ProxyRemoved':
        return update(tx, event, { proxy: null });
      case 'ConnectionStarting':
        return update(tx, event, { state: 'connecting', connected: false, qr_count: 0, ...clearQr });
      case 'QrCodeIssued': {
        const q = d as unknown as InstanceEventMap['QrCodeIssued'];
        return update(tx, event, {
          state: 'qr',
          qr_code: q.code,
          qr_expires_at: q.expiresAt,
          qr_count: q.count,
        });
      }
      case 'PairingCodeIssued': {
        const p = d as unknown as InstanceEventMap['PairingCodeIssued'];
        return update(tx, event, { pairing_code: p.code, pairing_phone: p.phone });
      }
      case 'InstanceOpened': {
        const o = d as unknown as InstanceEventMap['InstanceOpened'];
        return update(tx, event, {
          state: 'open',
          connected: true,
          logged_in: true,
          paired: true,
          jid: o.jid,
          lid: o.lid ?? null,
          profile_name: o.pushName,
          ...clearQr,
        });
      }
      case 'ConnectionClosed': {
        const c = d as unknown as InstanceEventMap['ConnectionClosed'];
        return update(tx, event, {
          state: c.willReconnect ? 'connecting' : 'disconnected',
          connected: false,
          last_disconnect_reason: c.reason,
          last_disconnect_code: c.code,
          last_disconnect_at: c.at,
          ...clearQr,
        });
      }
      case 'SessionRemoved':
        return update(tx, event, {
          paired: false,
          logged_in: false,
          jid: null,
          lid: null,
          profile_name: null,
        });
      case 'InstanceDeleted':
        return deleteInstanceRows(tx, instanceIdOfStream(event.stream) ?? '');
      case 'InstanceDeletionAudited': {
        const a = d as unknown as AuditEventMap['InstanceDeletionAudited'];
        await deleteInstanceRows(tx, a.instanceId);
        await tx.query(
          `INSERT INTO rm_instance_audit (instance_id, name, created_at, deleted_at, deleted_by) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (instance_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, deleted_by = EXCLUDED.deleted_by`,
          [a.instanceId, a.name, a.createdAt, a.at, a.by],
        );
        return;
      }
      default:
        return;
    }
  },
};
