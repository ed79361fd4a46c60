/**
 * The instance lifecycle as an XState v5 machine.
 *
 * Pure: no I/O, no clock, no randomness. The WhatsApp socket (`whatsappConnection`), the reconnect delay
 * (`reconnectDelay`) and the guards are named here and implemented through `setup`; the runtime provides
 * the real socket with `machine.provide({ actors: { whatsappConnection } })`.
 *
 * Domain events leave only through `emit()`, and only on transitions caused by an event the runtime
 * dispatched: it computes them with the pure `transition()` (see decide.ts), appends them, and only then
 * sends the same event to the live actor. Every transition that emits also updates the context with the
 * emitted events (evolveContext), so folding the stream rebuilds the context exactly.
 */
import { enqueueActions, fromCallback, sendTo, setup, type AnyActorRef } from 'xstate';
import type { InstanceEvent } from '../../src/domain/events.ts';
import { classifyClose, type CloseAction } from '../../src/domain/reason-codes.ts';
import { defaultReconnectDelay } from './backoff.ts';
import { eventsFor, type RecordParams } from './decisions.ts';
import { evolveContext, initialContext } from './evolve.ts';
import type {
  InstanceContext,
  InstanceMachineEvent,
  InstanceMachineInput,
  WhatsAppConnectionCommand,
  WhatsAppConnectionInput,
} from './types.ts';

/** The default socket does nothing: a machine that nobody provided a connection to never connects. */
export const inertWhatsAppConnection = fromCallback<WhatsAppConnectionCommand, WhatsAppConnectionInput>(
  () => () => undefined,
);

type ReconnectDelay = (args: { readonly context: InstanceContext }) => number;

/**
 * The `reconnectDelay` this machine was provided with. `retryInMs` is recorded in the same step that
 * enters `backoff`, so it must be computed with the very function the `after` timer will use.
 */
function providedReconnectDelay(self: AnyActorRef): ReconnectDelay {
  const logic = (self as { logic?: { implementations?: { delays?: Record<string, unknown> } } }).logic;
  const delay = logic?.implementations?.delays?.['reconnectDelay'];
  if (typeof delay === 'function') return delay as ReconnectDelay;
  if (typeof delay === 'number') return () => delay;
  return defaultReconnectDelay;
}

const CONNECTION = 'whatsappConnection';

export const instanceMachine = setup({
  types: {
    context: {} as InstanceContext,
    events: {} as InstanceMachineEvent,
    input: {} as InstanceMachineInput,
    emitted: {} as InstanceEvent,
  },
  actors: { whatsappConnection: inertWhatsAppConnection },
  delays: {
    reconnectDelay: ({ context }) => defaultReconnectDelay({ context }),
  },
  guards: {
    /** A signal from a socket older than the current attempt (it was in flight when a new one started). */
    isStaleSignal: ({ context, event }) =>
      'connectionSeq' in event &&
      event.connectionSeq !== undefined &&
      event.connectionSeq !== context.connectionSeq,
    qrCapReached: ({ context }) => context.qrCount + 1 > context.qrMaxCount,
    closeActionIs: ({ event }, params: { action: CloseAction; awaitingQr: boolean }) =>
      event.type === 'wa.closed' &&
      classifyClose(event.code, { awaitingQr: params.awaitingQr }).action === params.action,
    isPaired: ({ context }) => context.paired,
    /** Shut down cleanly while connected: the next boot resumes it. */
    resumesAfterShutdown: ({ context }) => context.paired && context.lastClose?.reason === 'shutdown',
  },
  actions: {
    record: enqueueActions(({ context, event, enqueue, self }, decision: RecordParams) => {
      const delay = providedReconnectDelay(self);
      const events = eventsFor(decision, context, event, (inBackoff) => delay({ context: inBackoff }));
      for (const domainEvent of events) enqueue.emit(domainEvent);
      const next = events.reduce(evolveContext, context);
      enqueue.assign(() => next);
    }),
    forwardPairingCodeRequest: sendTo(CONNECTION, ({ event }): WhatsAppConnectionCommand => {
      if (event.type !== 'requestPairingCode') throw new Error(`unexpected ${event.type}`);
      return { type: 'requestPairingCode', phone: event.phone };
    }),
    forwardSettings: sendTo(CONNECTION, ({ context }): WhatsAppConnectionCommand => ({
      type: 'applySettings',
      settings: context.advancedSettings,
    })),
    /**
     * Runs on exit of `session`, before XState stops the socket actor: a transition's own actions would run
     * after the stop, too late to reach the socket. Logout and delete of a paired instance log out on
     * WhatsApp first; the socket closes once the logout is done.
     */
    logOutBeforeClosing: enqueueActions(({ context, event, enqueue }) => {
      if (event.type === 'logout' || (event.type === 'delete' && context.paired)) {
        enqueue.sendTo(CONNECTION, { type: 'logout' } satisfies WhatsAppConnectionCommand);
      }
    }),
  },
}).createMachine({
  id: 'instance',
  context: ({ input }) => initialContext(input, input),
  initial: 'created',
  on: {
    logout: { target: '.disconnected', actions: { type: 'record', params: { kind: 'logout' } } },
    delete: { target: '.deleted', actions: { type: 'record', params: { kind: 'delete' } } },
    configureSinks: { actions: { type: 'record', params: { kind: 'sinks' } } },
    // Where connect starts nothing (already connecting or open), its sinks still apply.
    connect: { actions: { type: 'record', params: { kind: 'sinks' } } },
    changeAdvancedSettings: { actions: { type: 'record', params: { kind: 'settings' } } },
    // A proxy applies to the next connection (the specification: reconnect to apply it).
    configureProxy: { actions: { type: 'record', params: { kind: 'proxy' } } },
    removeProxy: { actions: { type: 'record', params: { kind: 'removeProxy' } } },
  },
  states: {
    created: {
      on: {
        connect: { target: 'session', actions: { type: 'record', params: { kind: 'start' } } },
        reconnect: { target: 'session', actions: { type: 'record', params: { kind: 'start' } } },
      },
    },
    disconnected: {
      on: {
        connect: { target: 'session', actions: { type: 'record', params: { kind: 'start' } } },
        reconnect: { target: 'session', actions: { type: 'record', params: { kind: 'start' } } },
        restore: {
          guard: 'resumesAfterShutdown',
          target: 'session',
          actions: { type: 'record', params: { kind: 'start' } },
        },
      },
    },
    backoff: {
      // The timer's transition emits nothing and stays in API state `connecting`. The runtime records only
      // events it computed with transition() before applying them to the live actor; a timer fires inside
      // the live actor where nobody can record anything. An event emitted here would never be stored, and
      // a state change here would make the live actor differ from the fold of the stream.
      after: { reconnectDelay: { target: 'session' } },
      on: {
        reconnect: { target: 'session', actions: { type: 'record', params: { kind: 'start' } } },
        disconnect: {
          target: 'disconnected',
          actions: { type: 'record', params: { kind: 'userDisconnect' } },
        },
        shutdown: { target: 'disconnected', actions: { type: 'record', params: { kind: 'shutdown' } } },
        restore: [
          { guard: 'isPaired', target: 'session', actions: { type: 'record', params: { kind: 'start' } } },
          { target: 'disconnected', actions: { type: 'record', params: { kind: 'abandon' } } },
        ],
      },
    },
    session: {
      // One socket for connecting, QR and open: it survives QR → open. Re-entering `session` (515, reconnect,
      // restore) closes it and opens a new one.
      invoke: {
        id: CONNECTION,
        src: 'whatsappConnection',
        input: ({ context }): WhatsAppConnectionInput => ({
          instanceId: context.instanceId,
          connectionSeq: context.connectionSeq,
          paired: context.paired,
          proxy: context.proxy,
          settings: context.advancedSettings,
        }),
      },
      exit: 'logOutBeforeClosing',
      initial: 'connecting',
      on: {
        reconnect: {
          target: 'session',
          reenter: true,
          actions: { type: 'record', params: { kind: 'start' } },
        },
        disconnect: {
          target: 'disconnected',
          actions: { type: 'record', params: { kind: 'userDisconnect' } },
        },
        shutdown: { target: 'disconnected', actions: { type: 'record', params: { kind: 'shutdown' } } },
        // After a restart the actor is restored in the state the stream ended in, without a socket.
        restore: [
          {
            guard: 'isPaired',
            target: 'session',
            reenter: true,
            actions: { type: 'record', params: { kind: 'start' } },
          },
          { target: 'disconnected', actions: { type: 'record', params: { kind: 'abandon' } } },
        ],
        changeAdvancedSettings: {
          actions: [{ type: 'record', params: { kind: 'settings' } }, 'forwardSettings'],
        },
        'wa.closed': closeTransitions(false),
      },
      states: {
        connecting: {
          on: {
            // Forwarded as soon as the socket exists: the adapter asks once the socket can carry it.
            requestPairingCode: { actions: 'forwardPairingCodeRequest' },
            'wa.qr': qrTransitions(),
            'wa.pairingCode': pairingCodeTransitions(),
            'wa.opened': openedTransitions(),
          },
        },
        qr: {
          on: {
            requestPairingCode: { actions: 'forwardPairingCodeRequest' },
            'wa.qr': qrTransitions(),
            'wa.pairingCode': pairingCodeTransitions(),
            'wa.opened': openedTransitions(),
            // Baileys closes with 408 when the last QR of an attempt expired: that is the QR cap too.
            'wa.closed': closeTransitions(true),
          },
        },
        open: {},
      },
    },
    deleted: { type: 'final' },
  },
});

function staleSignal() {
  return { guard: 'isStaleSignal' } as const;
}

function qrTransitions() {
  return [
    staleSignal(),
    {
      guard: 'qrCapReached',
      target: '#instance.disconnected',
      actions: { type: 'record', params: { kind: 'qrCapReached' } },
    },
    { target: '#instance.session.qr', actions: { type: 'record', params: { kind: 'qr' } } },
  ] as const;
}

function pairingCodeTransitions() {
  return [staleSignal(), { actions: { type: 'record', params: { kind: 'pairingCode' } } }] as const;
}

function openedTransitions() {
  return [
    staleSignal(),
    { target: '#instance.session.open', actions: { type: 'record', params: { kind: 'opened' } } },
  ] as const;
}

function closeTransitions(awaitingQr: boolean) {
  const record = { type: 'record', params: { kind: 'closed', awaitingQr } } as const;
  return [
    staleSignal(),
    {
      guard: { type: 'closeActionIs', params: { action: 'restart_now', awaitingQr } },
      target: '#instance.session',
      reenter: true,
      actions: record,
    },
    {
      guard: { type: 'closeActionIs', params: { action: 'backoff', awaitingQr } },
      target: '#instance.backoff',
      actions: record,
    },
    { target: '#instance.disconnected', actions: record },
  ] as const;
}

export type InstanceMachine = typeof instanceMachine;
