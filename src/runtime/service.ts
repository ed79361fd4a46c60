/**
 * What the HTTP layer may ask of the runtime. Commands return after their events are in the read model
 * (read-your-writes), so a GET right after sees the change.
 */
import type { AdvancedSettings, ProxyProtocol, ProxyView, SinkSettings } from '../domain/events.ts';
import type { InstanceView } from '../../projections/queries.ts';
import type { TextOptions } from '../whatsapp/port.ts';

export interface ProxyInput {
  readonly host: string;
  readonly port: number;
  readonly protocol: ProxyProtocol;
  readonly username?: string;
  readonly password?: string;
}

export interface CreateInstanceInput {
  /** A UUID chosen by the caller (Evolution GO's `instanceId`); generated when absent. */
  readonly id?: string;
  readonly name: string;
  readonly token?: string;
  readonly sinks?: Partial<SinkSettings>;
  readonly proxy?: ProxyInput;
  readonly advancedSettings?: Partial<AdvancedSettings>;
}

export interface SentMessage {
  readonly id: string;
  readonly status: string;
  readonly timestamp: string;
  readonly to: string;
  /** The JIDs the message mentions, when it mentions any. */
  readonly mentions?: readonly string[];
}

export interface SendTextOptions extends TextOptions {
  /** Shows "typing…" to the recipient for this long before sending. */
  readonly delayMs?: number;
}

export interface InstanceService {
  /** The token and webhook secret are returned here only: they are stored hashed or sealed. */
  create(
    input: CreateInstanceInput,
  ): Promise<{ instance: InstanceView; token: string; webhookSecret: string }>;
  /** Starts connecting (asynchronous: returns at once with the state). Optionally reconfigures sinks first. */
  connect(instanceId: string, sinks?: Partial<SinkSettings>): Promise<InstanceView>;
  /** Rate-limited per instance (429 with Retry-After). */
  reconnect(instanceId: string): Promise<InstanceView>;
  disconnect(instanceId: string): Promise<InstanceView>;
  logout(instanceId: string): Promise<InstanceView>;
  delete(instanceId: string, by: string): Promise<void>;
  /** Connects when needed, then asks WhatsApp for an 8-character code for this phone. */
  requestPairingCode(instanceId: string, phone: string): Promise<{ pairingCode: string }>;
  changeAdvancedSettings(instanceId: string, patch: Partial<AdvancedSettings>): Promise<AdvancedSettings>;
  configureSinks(instanceId: string, patch: Partial<SinkSettings>): Promise<SinkSettings>;
  configureProxy(instanceId: string, proxy: ProxyInput): Promise<ProxyView>;
  removeProxy(instanceId: string): Promise<void>;
  sendText(instanceId: string, number: string, text: string, options?: SendTextOptions): Promise<SentMessage>;
}
