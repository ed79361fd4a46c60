/**
 * Wraps the WhatsApp connector so the runtime can reach each instance's live connection (to send a
 * text, mark as read, reject a call) without reaching into the machine's invoked actor.
 */
import type { WhatsAppConnection, WhatsAppConnector } from '../whatsapp/port.ts';

export class ConnectionRegistry {
  private readonly live = new Map<string, WhatsAppConnection>();
  private opened = 0;

  wrap(connector: WhatsAppConnector): WhatsAppConnector {
    const wrapped: WhatsAppConnector = Object.create(connector) as WhatsAppConnector;
    wrapped.open = (options, listener) => {
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
