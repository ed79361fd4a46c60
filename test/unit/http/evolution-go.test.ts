/** The Evolution GO profile's request readers and serializers, as pure functions. */
import { describe, expect, it } from 'vitest';
import {
  advancedSettingsPatch,
  connectRequest,
  createRequest,
  EvolutionError,
  flagOf,
  logsRequest,
  proxyOf,
  sendTextRequest,
} from '../../../src/http/profiles/evolution-go/requests.ts';
import { evolutionEventString } from '../../../src/http/profiles/evolution-go/event-names.ts';
import {
  toEvolutionInstance,
  toEvolutionLogEntry,
  toEvolutionQr,
  toEvolutionStatus,
} from '../../../src/http/profiles/evolution-go/wire.ts';
import { DEFAULT_ADVANCED_SETTINGS } from '../../../src/domain/events.ts';
import type { InstanceView } from '../../../projections/queries.ts';

function refused(run: () => unknown): { status: number; message: string } {
  try {
    run();
  } catch (error) {
    if (error instanceof EvolutionError) return { status: error.statusCode, message: error.message };
    throw error;
  }
  throw new Error('not refused');
}

const view: InstanceView = {
  id: '7d1f2c7e-5c1b-4a7e-9a51-2f0d3c1b9e10',
  name: 'vendas',
  state: 'qr',
  connected: false,
  loggedIn: false,
  paired: false,
  jid: null,
  lid: null,
  profileName: null,
  qrcode: { code: '2@abc', expiresAt: '2026-01-01T00:00:00.000Z', count: 1 },
  pairingCode: null,
  webhookUrl: 'https://hooks.example/x',
  events: ['MESSAGE', 'QR_CODE', 'QRCODE_UPDATED'],
  rabbitmqEnable: true,
  websocketEnable: false,
  natsEnable: false,
  advancedSettings: DEFAULT_ADVANCED_SETTINGS,
  proxy: { host: 'p.example', port: 1080, protocol: 'socks5', username: 'u', hasPassword: true },
  lastDisconnect: { reason: 'qr_timeout', code: null, at: '2026-01-01T00:00:00.000Z' },
  version: 3,
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
};

describe('serializers', () => {
  it('the flat instance JSON', () => {
    expect(toEvolutionInstance(view, 'tok', 'data:image/png;base64,AAA', 'zapwire')).toEqual({
      id: view.id,
      name: 'vendas',
      token: 'tok',
      webhook: 'https://hooks.example/x',
      rabbitmqEnable: 'enabled',
      websocketEnable: 'disabled',
      natsEnable: 'disabled',
      jid: '',
      qrcode: 'data:image/png;base64,AAA|2@abc',
      connected: false,
      expiration: 0,
      disconnect_reason: 'qr_timeout',
      events: 'MESSAGE,QRCODE',
      os_name: '',
      proxy: '{"host":"p.example","port":"1080","protocol":"socks5","username":"u"}',
      client_name: 'zapwire',
      createdAt: '2026-01-01T00:00:00.000Z',
      ...DEFAULT_ADVANCED_SETTINGS,
    });
    expect(toEvolutionInstance({ ...view, state: 'open' }, undefined, undefined, 'z')).toMatchObject({
      token: '',
      qrcode: '',
      connected: true,
      disconnect_reason: '',
    });
  });

  it('status, QR and log entries', () => {
    expect(toEvolutionStatus({ connected: true, loggedIn: false, name: null })).toEqual({
      Connected: true,
      LoggedIn: false,
      Name: '',
    });
    expect(toEvolutionQr('data:image/png;base64,AAA|2@abc', '2@abc')).toEqual({
      Qrcode: 'data:image/png;base64,AAA',
      Code: '2@abc',
    });
    expect(
      toEvolutionLogEntry('i', { level: 'warn', message: 'm', context: {}, at: '2026-01-01T00:00:00.000Z' }),
    ).toEqual({ timestamp: '2026-01-01T00:00:00.000Z', level: 'WARN', instance_id: 'i', message: 'm' });
  });

  it('event names both ways', () => {
    expect(evolutionEventString(['ALL'])).toContain('HISTORY_SYNC');
    expect(evolutionEventString(['MESSAGE_SENT', 'PRESENCE_UPDATE', 'GROUP_UPDATE'])).toBe(
      'SEND_MESSAGE,PRESENCE,GROUP',
    );
    expect(connectRequest({ subscribe: ['chat_presence', 'SEND_MESSAGE'] }).subscribe).toEqual([
      'PRESENCE_UPDATE',
      'MESSAGE_SENT',
    ]);
    expect(connectRequest({ subscribe: ['NEWSLETTER'] }).subscribe).toBeUndefined();
    // 0.7: unknown names are dropped while a known one remains; none known is a 400.
    expect(connectRequest({ subscribe: ['bogus', 'call', 'x'] }).subscribe).toEqual(['CALL']);
    expect(connectRequest({ subscribe: 'bogus,ALL' }).subscribe).toEqual(['ALL']);
    expect(() => connectRequest({ subscribe: ['bogus'] })).toThrow(
      /subscribe must contain a valid event or ALL/,
    );
    expect(connectRequest({ subscribe: [] }).subscribe).toBeUndefined();
  });
});

describe('request readers', () => {
  it('flags', () => {
    expect([flagOf('enabled', 'f'), flagOf('disabled', 'f'), flagOf('', 'f'), flagOf(true, 'f')]).toEqual([
      true,
      false,
      undefined,
      true,
    ]);
    expect(refused(() => flagOf('yes', 'natsEnable')).status).toBe(400);
  });

  it('create', () => {
    expect(refused(() => createRequest(undefined))).toEqual({ status: 400, message: 'EOF' });
    expect(refused(() => createRequest({ name: ' ' })).message).toBe('name is required');
    expect(
      createRequest({ name: 'a b', token: 't', instanceId: '7D1F2C7E-5C1B-4A7E-9A51-2F0D3C1B9E10' }),
    ).toEqual({
      name: 'a b',
      token: 't',
      instanceId: '7d1f2c7e-5c1b-4a7e-9a51-2f0d3c1b9e10',
    });
    expect(createRequest({ name: 'a', token: 't', proxy: { host: '' } })).not.toHaveProperty('proxy');
  });

  it('proxy', () => {
    expect(proxyOf({ host: 'h', port: '42001' }, '')).toEqual({ host: 'h', port: 42001, protocol: 'socks5' });
    expect(refused(() => proxyOf({ host: 'h', port: '99999' }, '')).status).toBe(400);
    expect(refused(() => proxyOf({ host: 'h', port: true }, '')).message).toBe(
      'json: cannot unmarshal boolean into Go struct field ProxyConfig.port of type string',
    );
  });

  it('advanced settings', () => {
    expect(advancedSettingsPatch({ alwaysOnline: null, rejectCall: true, other: 1 })).toEqual({
      rejectCall: true,
    });
    expect(refused(() => advancedSettingsPatch([])).status).toBe(400);
    expect(refused(() => advancedSettingsPatch(null)).status).toBe(400);
    expect(refused(() => advancedSettingsPatch({ alwaysOnline: 'false' })).message).toBe(
      'json: cannot unmarshal string into Go struct field AdvancedSettings.alwaysOnline of type bool',
    );
  });

  it('send text', () => {
    expect(sendTextRequest({ number: '1', text: 'x', mentionedJid: 'a@s.whatsapp.net' })).toEqual({
      number: '1',
      text: 'x',
      delayMs: 0,
      mentionedJid: ['a@s.whatsapp.net'],
      mentionAll: false,
    });
    expect(refused(() => sendTextRequest({ number: '1', text: 'x', delay: '5' })).status).toBe(400);
    expect(refused(() => sendTextRequest({ number: '1', text: 'x', delay: 600_000 })).status).toBe(400);
  });

  it('logs: whole UTC days, both included; 7 days by default; an exact level set', () => {
    const now = new Date('2026-03-10T15:00:00Z');
    expect(logsRequest({}, now)).toEqual({
      since: '2026-03-03T00:00:00.000Z',
      until: '2026-03-11T00:00:00.000Z',
      limit: 100,
    });
    expect(
      logsRequest({ start_date: '2025-04-11', end_date: '2025-04-17', level: 'debug,Warn' }, now),
    ).toEqual({
      since: '2025-04-11T00:00:00.000Z',
      until: '2025-04-18T00:00:00.000Z',
      levels: ['debug', 'warn'],
      limit: 100,
    });
    expect(refused(() => logsRequest({ level: 'LOUD' }, now)).message).toBe('nível de log inválido: LOUD');
    expect(refused(() => logsRequest({ start_date: '2025-13-01' }, now)).status).toBe(400);
    expect(refused(() => logsRequest({ limit: '0' }, now)).status).toBe(400);
  });
});
