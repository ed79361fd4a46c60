/**
 * The `whatsappConnection` actor of the instance machine: one WhatsApp connection per invocation.
 *
 * It opens the port's connection when the machine enters `session`, closes it when the machine leaves,
 * and carries the machine's commands (pairing code, settings, logout) to it.
 *
 * Signals go to `route`, not to `sendBack`. sendBack would feed them straight into the live actor, which
 * would change state and emit domain events that were never appended, so the log and the actor would
 * part ways. The runtime instead puts each signal through the same decide → append → apply path as a
 * command, in the instance's mailbox, and WhatsApp traffic (`whatsapp` signals) goes to its own stream
 * without touching the machine at all.
 */
import { fromCallback } from 'xstate';
import type {
  ConnectionSignalEvent,
  WhatsAppConnectionCommand,
  WhatsAppConnectionInput,
} from '../../machines/instance/types.ts';
import type { WhatsAppConnector, WhatsAppSignal } from './port.ts';

/** A signal tagged with the connection it came from (the machine ignores signals of older connections). */
export type RoutedSignal = WhatsAppSignal & { readonly connectionSeq: number };

export type SignalRoute = (instanceId: string, signal: RoutedSignal) => void;

export interface ConnectionActorOptions {
  /** A forwarded command failed (the pairing-code request, applying settings, logout). Default: ignored. */
  readonly onCommandFailed?: (
    instanceId: string,
    command: WhatsAppConnectionCommand['type'] | 'close',
    error: unknown,
  ) => void;
}

export function createConnectionActor(
  connector: WhatsAppConnector,
  route: SignalRoute,
  options: ConnectionActorOptions = {},
) {
  return fromCallback<WhatsAppConnectionCommand, WhatsAppConnectionInput>(({ input, receive }) => {
    const { instanceId, connectionSeq } = input;
    // Once the machine has left `session`, whatever the old socket still says is about a connection that
    // no longer exists: drop it here rather than let it race a newer connection's signals.
    let attached = true;
    let loggingOut: Promise<void> | undefined;
    const failed = (command: WhatsAppConnectionCommand['type'] | 'close') => (error: unknown) => {
      options.onCommandFailed?.(instanceId, command, error);
    };

    const connection = connector.open(
      { instanceId, proxy: input.proxy, settings: input.settings, paired: input.paired },
      (signal) => {
        if (attached) route(instanceId, { ...signal, connectionSeq });
      },
    );

    receive((command) => {
      switch (command.type) {
        case 'requestPairingCode':
          // The code comes back as a `pairingCode` signal; only a failure needs handling here.
          connection.requestPairingCode(command.phone).catch(failed('requestPairingCode'));
          return;
        case 'applySettings':
          try {
            connection.applySettings(command.settings);
          } catch (error) {
            failed('applySettings')(error);
          }
          return;
        case 'logout':
          loggingOut ??= connection.logout().catch(failed('logout'));
          return;
      }
    });

    return () => {
      attached = false;
      // The machine sends `logout` on its way out of `session`, so cleanup follows at once: let the logout
      // finish before the socket goes (close() after logout() is a no-op).
      const closing = loggingOut ? loggingOut.then(() => connection.close()) : connection.close();
      closing.catch(failed('close'));
    };
  });
}

/**
 * The machine event for a connection signal, stamped with `at`; undefined for WhatsApp traffic, which
 * the runtime appends to the instance's `wa-<id>` stream instead.
 */
export function signalToMachineEvent(signal: RoutedSignal, at: string): ConnectionSignalEvent | undefined {
  const { connectionSeq } = signal;
  switch (signal.type) {
    case 'qr':
      return { type: 'wa.qr', code: signal.code, expiresAt: signal.expiresAt, at, connectionSeq };
    case 'pairingCode':
      return { type: 'wa.pairingCode', code: signal.code, phone: signal.phone, at, connectionSeq };
    case 'opened':
      return {
        type: 'wa.opened',
        jid: signal.jid,
        pushName: signal.pushName,
        lid: signal.lid ?? null,
        at,
        connectionSeq,
      };
    case 'closed':
      return {
        type: 'wa.closed',
        code: signal.code,
        ...(signal.message === undefined ? {} : { message: signal.message }),
        at,
        connectionSeq,
      };
    case 'whatsapp':
      return undefined;
  }
}
