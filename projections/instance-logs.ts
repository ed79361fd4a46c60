import type { RecordedEvent } from '../src/store/port.ts';
import type { InstanceEventMap, RuntimeLogEventMap } from '../src/domain/events.ts';
import {
  AUDIT_STREAM,
  INSTANCE_STREAM_PREFIX,
  WHATSAPP_STREAM_PREFIX,
  instanceIdOfStream,
} from '../src/domain/events.ts';
import type { Projection } from './projection.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

interface LogLine {
  readonly level: LogLevel;
  readonly message: string;
  readonly context: Record<string, unknown>;
}

/** The human-readable line an instance's log shows for a domain event; undefined = not logged. */
export function logLineOf(event: RecordedEvent): LogLine | undefined {
  const d = event.data;
  switch (event.type) {
    case 'InstanceCreated':
      return { level: 'info', message: 'instance created', context: {} };
    case 'EventSinksConfigured':
      return { level: 'info', message: 'event destinations configured', context: { sinks: d['sinks'] } };
    case 'AdvancedSettingsChanged':
      return { level: 'info', message: 'advanced settings changed', context: { settings: d['settings'] } };
    case 'ProxyConfigured':
      return {
        level: 'info',
        message: 'proxy configured (applies on the next connection)',
        context: { proxy: d['proxy'] },
      };
    case 'ProxyRemoved':
      return { level: 'info', message: 'proxy removed (applies on the next connection)', context: {} };
    case 'ConnectionStarting': {
      const s = d as unknown as InstanceEventMap['ConnectionStarting'];
      return {
        level: 'info',
        message: `connecting (${s.trigger})`,
        context: { trigger: s.trigger, attempt: s.attempt },
      };
    }
    case 'QrCodeIssued':
      return {
        level: 'info',
        message: `QR code ${String(d['count'])} issued`,
        context: { expiresAt: d['expiresAt'] },
      };
    case 'PairingCodeIssued':
      return { level: 'info', message: 'pairing code issued', context: {} };
    case 'InstanceOpened':
      return { level: 'info', message: 'connected to WhatsApp', context: { jid: d['jid'] } };
    case 'ConnectionClosed': {
      const c = d as unknown as InstanceEventMap['ConnectionClosed'];
      const level: LogLevel =
        c.reason === 'banned' || c.reason === 'logged_out' || c.reason === 'replaced'
          ? 'error'
          : c.reason === 'user_disconnect' || c.reason === 'shutdown' || c.reason === 'restart_required'
            ? 'info'
            : 'warn';
      const message = c.willReconnect
        ? `connection closed (${c.reason}, code ${c.code ?? 'none'}); reconnecting${c.retryInMs ? ` in ${Math.round(c.retryInMs / 1000)} s` : ''}`
        : `connection closed (${c.reason}, code ${c.code ?? 'none'})`;
      const detail = c.message ? `: ${c.message}` : '';
      return {
        level,
        message: `${message}${detail}`,
        context: { code: c.code, reason: c.reason, willReconnect: c.willReconnect },
      };
    }
    case 'SessionRemoved':
      return {
        level: 'warn',
        message: `WhatsApp session removed (${String(d['reason'])}): the next connect needs a QR code`,
        context: {},
      };
    case 'RuntimeLogged': {
      const r = d as unknown as RuntimeLogEventMap['RuntimeLogged'];
      return { level: r.level, message: r.message, context: { ...r.context } };
    }
    default:
      return undefined;
  }
}

export const instanceLogsProjection: Projection = {
  name: 'instance_logs',
  // By type too: the WhatsApp stream is mostly messages, which make no log line, and the runner then
  // neither wakes nor writes for them.
  filter: {
    streamPrefixes: [INSTANCE_STREAM_PREFIX, WHATSAPP_STREAM_PREFIX, AUDIT_STREAM],
    eventTypes: [
      'InstanceCreated',
      'EventSinksConfigured',
      'AdvancedSettingsChanged',
      'ProxyConfigured',
      'ProxyRemoved',
      'ConnectionStarting',
      'QrCodeIssued',
      'PairingCodeIssued',
      'InstanceOpened',
      'ConnectionClosed',
      'SessionRemoved',
      'RuntimeLogged',
      'InstanceDeleted',
      'InstanceDeletionAudited',
    ],
  },
  tables: ['rm_instance_logs'],
  async apply(tx, event) {
    if (event.type === 'InstanceDeleted' || event.type === 'InstanceDeletionAudited') {
      const id =
        event.type === 'InstanceDeleted'
          ? instanceIdOfStream(event.stream)
          : String(event.data['instanceId']);
      await tx.query('DELETE FROM rm_instance_logs WHERE instance_id = $1', [id]);
      return;
    }
    const line = logLineOf(event);
    if (!line) return;
    await tx.query(
      `INSERT INTO rm_instance_logs (event_id, instance_id, level, message, context, at)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING`,
      [
        event.id,
        instanceIdOfStream(event.stream),
        line.level,
        line.message,
        JSON.stringify(line.context),
        event.createdAt,
      ],
    );
  },
};
