/**
 * Wraps the WhatsApp connector so the runtime can reach each instance's live connection (to send a
 * text, mark as read, reject a call) without reaching into the machine's invoked actor.
 */
import type { WhatsAppConnection, WhatsAppConnector, WhatsAppSignalListener } from '../whatsapp/port.ts';

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
      if (mayConnect && !mayConnect(options.instanceId)) return refusedConnection(listener);
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

  /** Instances with a live connection. */
  ids(): string[] {
    return [...this.live.keys()];
  }

  count(): number {
    return this.live.size;
  }

  totalOpened(): number {
    return this.opened;
  }
}

/**
 * What `open` gives a node without a current lease: no socket, every command refused, and at once a
 * `closed` (503, unavailable) signal. If the node still holds the lease (its renewal was only late), the
 * machine records the close and retries with its backoff, by when the lease is current again; if it lost
 * the lease, recording the close is refused by the database and the node drops the instance.
 */
function refusedConnection(listener: WhatsAppSignalListener): WhatsAppConnection {
  const message = 'this node does not hold the instance lease';
  setTimeout(() => listener({ type: 'closed', code: 503, message }), 0);
  const refuse = () => Promise.reject(new Error(message));
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
