/**
 * What the HTTP layer may ask of the runtime. Commands answer from the write side (the live actor's
 * folded state right after their events were appended) and return once those events are in the read
 * model too (read-your-writes), so a GET right after sees the change.
 */
import type { AdvancedSettings, ProxyProtocol, ProxyView, SinkSettings } from '../domain/events.ts';
import type { TextOptions } from '../whatsapp/port.ts';
import type { SendView } from './outbox/instance-outbox.ts';
import type { ApiState } from '../../machines/instance/index.ts';

/** An instance's connection state as a command left it. */
export interface InstanceStatus {
  readonly id: string;
  readonly name: string;
  readonly state: ApiState;
  /** The WhatsApp connection is open. */
  readonly connected: boolean;
  /** A WhatsApp session is saved (the next connection needs no QR). */
  readonly loggedIn: boolean;
  readonly jid: string | null;
}

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
  /** WhatsApp's message id. */
  readonly id: string;
  /** The outbox's id of the send (GET /instance/:id/sends/:sendId). */
  readonly sendId?: string;
  readonly status: string;
  readonly timestamp: string;
  readonly to: string;
  /** The JIDs the message mentions, when it mentions any. */
  readonly mentions?: readonly string[];
}

export interface SendTextOptions extends TextOptions {
  /** Shows "typing…" to the recipient for this long before sending. */
  readonly delayMs?: number;
  /** The caller's Idempotency-Key: a repeat returns the first request's send. */
  readonly idempotencyKey?: string;
  /** Not before this moment (kept in the log; cancel with DELETE /instance/:id/sends/:sendId). */
  readonly sendAt?: Date;
  /** How long to wait for WhatsApp's answer before answering "accepted" (0: at once). */
  readonly waitMs?: number;
}

/** A send's answer: sent (WhatsApp acknowledged it), or accepted and still on its way (follow it by id). */
export type SendOutcome =
  | { readonly state: 'sent'; readonly message: SentMessage }
  | { readonly state: 'accepted'; readonly send: SendView };

export interface InstanceService {
  /** The token and webhook secret are returned here only: they are stored hashed or sealed. */
  create(
    input: CreateInstanceInput,
  ): Promise<{ instance: InstanceStatus; token: string; webhookSecret: string }>;
  /**
   * Starts connecting (asynchronous: returns at once with the state). With `sinks`, reconfigures them in
   * the same step (one machine event, one append), also when the instance is connected already.
   */
  connect(instanceId: string, sinks?: Partial<SinkSettings>): Promise<InstanceStatus>;
  /** Rate-limited per instance (429 with Retry-After). */
  reconnect(instanceId: string): Promise<InstanceStatus>;
  disconnect(instanceId: string): Promise<InstanceStatus>;
  logout(instanceId: string): Promise<InstanceStatus>;
  delete(instanceId: string, by: string): Promise<void>;
  /** Replaces every token of the instance with a new generated one, returned once. */
  rotateToken(instanceId: string): Promise<{ token: string }>;
  /** Connects when needed, then asks WhatsApp for an 8-character code for this phone. */
  requestPairingCode(instanceId: string, phone: string): Promise<{ pairingCode: string }>;
  changeAdvancedSettings(instanceId: string, patch: Partial<AdvancedSettings>): Promise<AdvancedSettings>;
  configureSinks(instanceId: string, patch: Partial<SinkSettings>): Promise<SinkSettings>;
  configureProxy(instanceId: string, proxy: ProxyInput): Promise<ProxyView>;
  removeProxy(instanceId: string): Promise<void>;
  /** Through the instance's outbox (src/runtime/outbox). */
  sendText(instanceId: string, number: string, text: string, options?: SendTextOptions): Promise<SendOutcome>;
}
