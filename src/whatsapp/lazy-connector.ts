/**
 * A connector that loads the real one on first use. Baileys and its protocol tables cost about 50 MB of
 * memory and a noticeable part of start-up; a server with no instance to connect never needs them.
 *
 * `open` must return at once, so it returns a connection whose calls wait for the real one, in the order
 * they were made. A connection closed before the adapter has loaded is opened and closed at once (the
 * adapter's own close then reports `closed` as it always does). If the adapter fails to load, the
 * listener gets a `closed` signal, as for any connection that fails to start.
 */
import type {
  ConnectorFactory,
  OpenConnectionOptions,
  WhatsAppConnection,
  WhatsAppConnector,
  WhatsAppSignalListener,
} from './port.ts';

export function lazyConnector(load: () => Promise<WhatsAppConnector>): WhatsAppConnector {
  let loading: Promise<WhatsAppConnector> | undefined;
  const real = (): Promise<WhatsAppConnector> => (loading ??= load());

  return {
    open(options: OpenConnectionOptions, listener: WhatsAppSignalListener): WhatsAppConnection {
      let closeRequested = false;
      let loaded: WhatsAppConnection | undefined;
      const connection = real().then(
        (connector) => {
          const opened = connector.open(options, listener);
          loaded = opened;
          if (closeRequested) void opened.close();
          return opened;
        },
        (error: unknown) => {
          const reason = error instanceof Error ? error.message : String(error);
          listener({ type: 'closed', code: null, message: `the WhatsApp adapter could not load: ${reason}` });
          throw error;
        },
      );
      // Callers see the failure through the `closed` signal and through each call they make.
      connection.catch(() => undefined);
      const call = <T>(fn: (opened: WhatsAppConnection) => Promise<T>): Promise<T> => connection.then(fn);
      return {
        // The real connection's probe once the adapter has loaded (health sees none before).
        get probe() {
          return loaded?.probe;
        },
        sendText: (to, text, textOptions) => call((opened) => opened.sendText(to, text, textOptions)),
        requestPairingCode: (phone) => call((opened) => opened.requestPairingCode(phone)),
        rejectCall: (callId, fromJid) => call((opened) => opened.rejectCall(callId, fromJid)),
        markRead: (chatJid, messageIds, senderJid) =>
          call((opened) => opened.markRead(chatJid, messageIds, senderJid)),
        sendPresence: (presence, toJid) => call((opened) => opened.sendPresence(presence, toJid)),
        applySettings(settings) {
          void connection.then(
            (opened) => opened.applySettings(settings),
            () => undefined,
          );
        },
        logout: () => call((opened) => opened.logout()),
        async close() {
          closeRequested = true;
          const opened = await connection.catch(() => undefined);
          await opened?.close();
        },
      };
    },
    async removeSession(instanceId: string): Promise<void> {
      await (await real()).removeSession(instanceId);
    },
  };
}

/** The Baileys adapter (whatsapp/baileys), loaded when the first instance connects, not before. */
export const baileysOnFirstUse: ConnectorFactory = async (dependencies) =>
  lazyConnector(async () => {
    const { createBaileysConnector } = await import('./baileys/index.ts');
    return createBaileysConnector(dependencies);
  });
