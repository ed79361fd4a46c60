/**
 * Wraps the WhatsApp connector so the runtime can reach each instance's live connection (to send a
 * text, mark as read, reject a call) without reaching into the machine's invoked actor.
 */
import type { WhatsAppConnection, WhatsAppConnector } from '../whatsapp/port.ts';

export class ConnectionRegistry {
  private readonly live = new Map<string, WhatsAppConnection>();
  private opened = 0;

  /**
   * `mayConnect` (cluster mode): whether this node holds the instance's lease. Without it no socket
   * opens: a node that lost its lease must not open one, even from a reconnect timer that records nothing.
   */
  wrap(connector: WhatsAppConnector, mayConnect?: (instanceId: string) => boolean): WhatsAppConnector {
    const wrapped: WhatsAppConnector = Object.create(connector) as WhatsAppConnector;
    wrapped.open = (options, listener) => {
      if (mayConnect && !mayConnect(options.instanceId)) return refusedConnection();
      const connection = connector.open(options, listener);
      this.live.set(options.instanceId, connection);
      this.opened += 1;
      const close = connection.close.bind(connection);
      connection.close = async (...args: Parameters<WhatsAppConnection['close']>) => {
        if (this.live.get(options.instanceId) === connection) this.live.delete(options.instanceId);
        return close(...args);
      };
      return connection;
    };
    return wrapped;
  }

  get(instanceId: string): WhatsAppConnection | undefined {
    return this.live.get(instanceId);
  }

  count(): number {
    return this.live.size;
  }

  totalOpened(): number {
    return this.opened;
  }
}

/** What `open` gives a node without the lease: no socket, every command refused, nothing signalled. */
function refusedConnection(): WhatsAppConnection {
  const refuse = () => Promise.reject(new Error('this node does not hold the instance lease'));
  return {
    sendText: refuse,
    requestPairingCode: refuse,
    rejectCall: refuse,
    markRead: refuse,
    sendPresence: refuse,
    applySettings: () => undefined,
    logout: refuse,
    close: () => Promise.resolve(),
  };
}
