/**
 * Which domain events each transition records. Pure functions of (context, event): the machine emits what
 * these return and evolves its context with the same events, so the log alone rebuilds the context.
 */
import type { InstanceEvent, InstanceEventMap, SinkSettings } from '../../src/domain/events.ts';
import { pickAdvancedSettings } from '../../src/domain/events.ts';
import { classifyClose } from '../../src/domain/reason-codes.ts';
import { evolveContext } from './evolve.ts';
import type { InstanceContext, InstanceMachineEvent } from './types.ts';

export type RecordParams =
  /** connect / reconnect / restore: a new connection run, attempt 1. */
  | { readonly kind: 'start' }
  | { readonly kind: 'qr' }
  /** One QR more than `qrMaxCount` would be shown: give up instead of showing it. */
  | { readonly kind: 'qrCapReached' }
  | { readonly kind: 'pairingCode' }
  | { readonly kind: 'opened' }
  | { readonly kind: 'closed'; readonly awaitingQr: boolean }
  | { readonly kind: 'userDisconnect' }
  | { readonly kind: 'shutdown' }
  /** Boot found a never-paired instance mid-connection: it stays put (no QR storm after a restart). */
  | { readonly kind: 'abandon' }
  | { readonly kind: 'logout' }
  | { readonly kind: 'delete' }
  | { readonly kind: 'sinks' }
  | { readonly kind: 'settings' }
  | { readonly kind: 'proxy' }
  | { readonly kind: 'removeProxy' };

/** Computes the backoff delay for the context the machine will have in `backoff`. */
export type RetryDelay = (contextInBackoff: InstanceContext) => number;

type EventOf<T extends InstanceMachineEvent['type']> = Extract<InstanceMachineEvent, { type: T }>;

function expectEvent<T extends InstanceMachineEvent['type']>(
  event: InstanceMachineEvent,
  ...types: T[]
): EventOf<T> {
  if (!(types as string[]).includes(event.type)) {
    throw new Error(`instance machine: ${event.type} cannot record this (expected ${types.join(' or ')})`);
  }
  return event as EventOf<T>;
}

function withoutUndefined<T extends object>(patch: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sinksConfigured(context: InstanceContext, patch: Partial<SinkSettings>, at: string): InstanceEvent {
  return {
    type: 'EventSinksConfigured',
    data: { at, sinks: { ...context.sinks, ...withoutUndefined(patch) } },
  };
}

function closed(data: InstanceEventMap['ConnectionClosed']): InstanceEvent {
  return { type: 'ConnectionClosed', data };
}

export function eventsFor(
  decision: RecordParams,
  context: InstanceContext,
  event: InstanceMachineEvent,
  retryDelay: RetryDelay,
): InstanceEvent[] {
  const at = event.at;
  switch (decision.kind) {
    case 'start': {
      const e = expectEvent(event, 'connect', 'reconnect', 'restore');
      const trigger =
        e.type === 'restore' ? 'restore' : e.type === 'reconnect' && context.paired ? 'reconnect' : 'connect';
      // Connect with sinks: the new sinks first, so the connection's events already go where they say.
      const sinks = e.type === 'connect' && e.sinks ? [sinksConfigured(context, e.sinks, at)] : [];
      return [...sinks, { type: 'ConnectionStarting', data: { at, trigger, attempt: 1 } }];
    }
    case 'qr': {
      const e = expectEvent(event, 'wa.qr');
      return [
        {
          type: 'QrCodeIssued',
          data: { at, code: e.code, expiresAt: e.expiresAt, count: context.qrCount + 1 },
        },
      ];
    }
    case 'qrCapReached':
      return [closed({ at, code: null, reason: 'qr_timeout', willReconnect: false, retryInMs: null })];
    case 'pairingCode': {
      const e = expectEvent(event, 'wa.pairingCode');
      return [{ type: 'PairingCodeIssued', data: { at, code: e.code, phone: e.phone } }];
    }
    case 'opened': {
      const e = expectEvent(event, 'wa.opened');
      return [{ type: 'InstanceOpened', data: { at, jid: e.jid, pushName: e.pushName, lid: e.lid ?? null } }];
    }
    case 'closed':
      return closeEvents(context, expectEvent(event, 'wa.closed'), decision.awaitingQr, retryDelay);
    case 'userDisconnect':
      return [closed({ at, code: null, reason: 'user_disconnect', willReconnect: false, retryInMs: null })];
    case 'shutdown':
    case 'abandon':
      return [closed({ at, code: null, reason: 'shutdown', willReconnect: false, retryInMs: null })];
    case 'logout':
      // The close is recorded even when nothing was connected, so every reader sees `disconnected`.
      return [
        closed({ at, code: null, reason: 'user_logout', willReconnect: false, retryInMs: null }),
        { type: 'SessionRemoved', data: { at, reason: 'user_logout' } },
      ];
    case 'delete':
      return [
        ...(context.paired ? [{ type: 'SessionRemoved', data: { at, reason: 'deleted' } } as const] : []),
        { type: 'InstanceDeleted', data: { at, by: 'admin' } },
      ];
    case 'sinks': {
      const e = expectEvent(event, 'configureSinks', 'connect');
      return e.sinks ? [sinksConfigured(context, e.sinks, at)] : [];
    }
    case 'settings': {
      const e = expectEvent(event, 'changeAdvancedSettings');
      const settings = { ...context.advancedSettings, ...pickAdvancedSettings(e.settings) };
      return [{ type: 'AdvancedSettingsChanged', data: { at, settings } }];
    }
    case 'proxy': {
      const e = expectEvent(event, 'configureProxy');
      return [{ type: 'ProxyConfigured', data: { at, proxy: e.proxy } }];
    }
    case 'removeProxy':
      return [{ type: 'ProxyRemoved', data: { at } }];
  }
}

function closeEvents(
  context: InstanceContext,
  event: EventOf<'wa.closed'>,
  awaitingQr: boolean,
  retryDelay: RetryDelay,
): InstanceEvent[] {
  const { at, code } = event;
  const detail = event.message ? { message: closeMessage(event.message) } : {};
  const { reason, action, sessionRemoved } = classifyClose(code, { awaitingQr });
  switch (action) {
    case 'restart_now':
      return [
        closed({ at, code, reason, ...detail, willReconnect: true, retryInMs: 0 }),
        // Same attempt: a restart is WhatsApp's normal step after pairing, not a failure.
        {
          type: 'ConnectionStarting',
          data: { at, trigger: 'restart', attempt: context.reconnectAttempt + 1 },
        },
      ];
    case 'backoff': {
      const stable =
        context.openedAt !== null && Date.parse(at) - Date.parse(context.openedAt) >= context.stableOpenMs;
      const reconnectAttempt = (stable ? 0 : context.reconnectAttempt) + 1;
      const starting: InstanceEvent = {
        type: 'ConnectionStarting',
        data: { at, trigger: 'retry', attempt: reconnectAttempt + 1 },
      };
      // The delay may depend on any part of the context in `backoff`, which the events themselves decide.
      // `retryInMs` does not feed back into the context, so a placeholder gives the same context.
      const draft = [closed({ at, code, reason, ...detail, willReconnect: true, retryInMs: 0 }), starting];
      const retryInMs = retryDelay(draft.reduce(evolveContext, context));
      return [closed({ at, code, reason, ...detail, willReconnect: true, retryInMs }), starting];
    }
    case 'stop':
      return [
        closed({ at, code, reason, ...detail, willReconnect: false, retryInMs: null }),
        ...(sessionRemoved ? [{ type: 'SessionRemoved', data: { at, reason: 'logged_out' } } as const] : []),
      ];
  }
}

/**
 * The close message as it may be recorded: it travels to sinks with CONNECTION_UPDATE, so anything that
 * looks like URL credentials is removed, and it is bounded.
 */
export function closeMessage(message: string): string {
  return message.replace(/\/\/[^/@\s]*@/g, '//[redacted]@').slice(0, 300);
}
