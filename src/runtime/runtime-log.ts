/**
 * The runtime log of an instance: what went wrong around its WhatsApp connection (a failed command, an
 * auto-reply that could not be sent), and the lines the sinks write there (a webhook cap reached, a
 * RabbitMQ message returned as unroutable). Written to the process log and, as `RuntimeLogged`, to the
 * instance's `wa-` stream, where GET /instance/logs/:id finds it.
 */
import type { Logger } from 'pino';
import type { WhatsAppStreams } from './whatsapp-stream.ts';

export type RuntimeLogLevel = 'info' | 'warn' | 'error';

export class RuntimeLog {
  constructor(
    private readonly streams: Pick<WhatsAppStreams, 'append'>,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Never throws: a log line that cannot be stored must not fail what it describes. */
  async write(
    instanceId: string,
    level: RuntimeLogLevel,
    message: string,
    context: Record<string, unknown>,
  ): Promise<void> {
    this.logger[level]({ instanceId, ...context }, message);
    // Refused once the instance is deleted: a late line must not bring its stream back.
    await this.streams
      .append(instanceId, [
        { type: 'RuntimeLogged', data: { at: this.now().toISOString(), level, message, context } },
      ])
      .catch(() => undefined);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
