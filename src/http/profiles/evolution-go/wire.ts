/**
 * Evolution GO's response shapes, as pure functions of zapwire's read model. Evolution GO serialises some
 * Go structs without JSON tags, so their fields are PascalCase (`Connected`, `Qrcode`, `PairingCode`,
 * `Info.ID`); its instance model has tags, so the instance JSON is flat camelCase/snake_case.
 */
import type { InstanceView, LogEntry } from '../../../../projections/queries.ts';
import type { AdvancedSettings, ProxyView } from '../../../domain/events.ts';
import { evolutionEventString } from './event-names.ts';

export interface Success<T> {
  readonly message: 'success';
  readonly data: T;
}

export function success<T>(data: T): Success<T> {
  return { message: 'success', data };
}

export const SUCCESS_ONLY = { message: 'success' } as const;

/** `"enabled"` / `"disabled"`: Evolution GO keeps the sink switches as the strings its clients send. */
export function flagString(enabled: boolean): 'enabled' | 'disabled' {
  return enabled ? 'enabled' : 'disabled';
}

/** Evolution GO keeps the proxy as a JSON string in the instance row; the password is never shown here. */
export function proxyString(proxy: ProxyView | null): string {
  if (!proxy) return '';
  return JSON.stringify({
    host: proxy.host,
    port: String(proxy.port),
    protocol: proxy.protocol,
    username: proxy.username ?? '',
  });
}

export interface EvolutionInstance {
  readonly id: string;
  readonly name: string;
  readonly token: string;
  readonly webhook: string;
  readonly rabbitmqEnable: string;
  readonly websocketEnable: string;
  readonly natsEnable: string;
  readonly jid: string;
  readonly qrcode: string;
  readonly connected: boolean;
  readonly expiration: number;
  readonly disconnect_reason: string;
  readonly events: string;
  readonly os_name: string;
  readonly proxy: string;
  readonly client_name: string;
  readonly createdAt: string;
  readonly alwaysOnline: boolean;
  readonly rejectCall: boolean;
  readonly msgRejectCall: string;
  readonly readMessages: boolean;
  readonly ignoreGroups: boolean;
  readonly ignoreStatus: boolean;
}

/**
 * The flat instance JSON of GET /instance/all, /instance/info and POST /instance/create.
 * `token` is the instance token when the server holds it sealed ("" otherwise); `qrDataUrl` is the PNG
 * of the current QR code, which Evolution GO joins with the raw code as `"<png>|<code>"`.
 */
export function toEvolutionInstance(
  view: InstanceView,
  token: string | undefined,
  qrDataUrl: string | undefined,
  clientName: string,
): EvolutionInstance {
  const settings = view.advancedSettings;
  return {
    id: view.id,
    name: view.name,
    token: token ?? '',
    webhook: view.webhookUrl ?? '',
    rabbitmqEnable: flagString(view.rabbitmqEnable),
    websocketEnable: flagString(view.websocketEnable),
    natsEnable: flagString(view.natsEnable),
    jid: view.jid ?? '',
    qrcode: view.state === 'qr' && view.qrcode && qrDataUrl ? `${qrDataUrl}|${view.qrcode.code}` : '',
    connected: view.state === 'open',
    expiration: 0,
    disconnect_reason: view.state === 'open' ? '' : (view.lastDisconnect?.reason ?? ''),
    events: evolutionEventString(view.events),
    os_name: '',
    proxy: proxyString(view.proxy),
    client_name: clientName,
    createdAt: view.createdAt,
    ...advancedSettingsOf(settings),
  };
}

export function advancedSettingsOf(settings: AdvancedSettings): AdvancedSettings {
  return {
    alwaysOnline: settings.alwaysOnline,
    rejectCall: settings.rejectCall,
    msgRejectCall: settings.msgRejectCall,
    readMessages: settings.readMessages,
    ignoreGroups: settings.ignoreGroups,
    ignoreStatus: settings.ignoreStatus,
  };
}

/** GET /instance/status: whatsmeow's client state, PascalCase, no JID. */
export function toEvolutionStatus(status: {
  readonly connected: boolean;
  readonly loggedIn: boolean;
  readonly name: string | null;
}): { Connected: boolean; LoggedIn: boolean; Name: string } {
  return { Connected: status.connected, LoggedIn: status.loggedIn, Name: status.name ?? '' };
}

/** GET /instance/qr: `Qrcode` is the PNG data URL only, `Code` the raw code. */
export function toEvolutionQr(qrcodeWithCode: string, code: string): { Qrcode: string; Code: string } {
  const bar = qrcodeWithCode.lastIndexOf('|');
  return { Qrcode: bar >= 0 ? qrcodeWithCode.slice(0, bar) : qrcodeWithCode, Code: code };
}

export function toEvolutionPairingCode(pairingCode: string): { PairingCode: string } {
  return { PairingCode: pairingCode };
}

/** POST /instance/connect answers with what the connection will use. */
export function toEvolutionConnect(view: InstanceView): {
  jid: string;
  webhookUrl: string;
  eventString: string;
} {
  return {
    jid: view.jid ?? '',
    webhookUrl: view.webhookUrl ?? '',
    eventString: evolutionEventString(view.events),
  };
}

/** POST /instance/proxy/:id: the port as a string, as Evolution GO stores it. */
export function toEvolutionProxy(proxy: ProxyView): {
  host: string;
  port: string;
  protocol: string;
  hasAuth: boolean;
} {
  return {
    host: proxy.host,
    port: String(proxy.port),
    protocol: proxy.protocol,
    hasAuth: Boolean(proxy.username) || proxy.hasPassword,
  };
}

export interface EvolutionLogEntry {
  readonly timestamp: string;
  readonly level: string;
  readonly instance_id: string;
  readonly message: string;
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/** One line of GET /instance/logs: Evolution GO's logger entry (upper-case level, `instance_id`). */
export function toEvolutionLogEntry(instanceId: string, entry: LogEntry): EvolutionLogEntry {
  const hasContext = Object.keys(entry.context).length > 0;
  return {
    timestamp: entry.at,
    level: entry.level.toUpperCase(),
    instance_id: instanceId,
    message: entry.message,
    ...(hasContext ? { metadata: entry.context } : {}),
  };
}

export interface EvolutionSentText {
  readonly Info: {
    readonly ID: string;
    readonly Chat: string;
    readonly Sender: string;
    readonly IsFromMe: true;
    readonly IsGroup: boolean;
    readonly ServerID: number;
    readonly Type: string;
    readonly PushName: string;
    readonly Timestamp: string;
  };
  readonly Message: { readonly extendedTextMessage: Readonly<Record<string, unknown>> };
  readonly MessageContextInfo: Readonly<Record<string, unknown>>;
}

/**
 * POST /send/text: whatsmeow's message info (no JSON tags, JIDs as strings) and the protobuf message
 * in protojson's lowerCamel form, as Evolution GO returns them.
 */
export function toEvolutionSentText(sent: {
  readonly id: string;
  readonly to: string;
  readonly timestamp: string;
  readonly text: string;
  readonly senderJid: string;
  readonly pushName: string;
  readonly mentionedJids: readonly string[];
  readonly quoted?: { readonly messageId: string; readonly participant?: string };
}): EvolutionSentText {
  const contextInfo: Record<string, unknown> = {};
  if (sent.mentionedJids.length > 0) contextInfo['mentionedJID'] = [...sent.mentionedJids];
  if (sent.quoted) {
    contextInfo['stanzaID'] = sent.quoted.messageId;
    if (sent.quoted.participant) contextInfo['participant'] = sent.quoted.participant;
  }
  return {
    Info: {
      ID: sent.id,
      Chat: sent.to,
      Sender: sent.senderJid,
      IsFromMe: true,
      IsGroup: sent.to.endsWith('@g.us'),
      ServerID: 0,
      Type: 'ExtendedTextMessage',
      PushName: sent.pushName,
      Timestamp: sent.timestamp,
    },
    Message: {
      extendedTextMessage: {
        text: sent.text,
        ...(Object.keys(contextInfo).length > 0 ? { contextInfo } : {}),
      },
    },
    MessageContextInfo: {},
  };
}
