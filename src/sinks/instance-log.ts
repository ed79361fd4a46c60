/**
 * How a sink writes a line into an instance's own log (GET /instance/logs/:id). The runtime owns those
 * lines: main.ts hands the sinks a runtime log on the runtime's writer of `wa-` streams, which refuses lines
 * for a deleted instance so a late one cannot bring its stream back. Without a runtime (tests, tools) the
 * line goes to the process log only.
 */
import type { Logger } from 'pino';

export type SinkLogLevel = 'warn' | 'error';

export type InstanceLogWriter = (
  instanceId: string,
  level: SinkLogLevel,
  message: string,
  context: Record<string, unknown>,
) => Promise<void>;

/** The process log only: for sinks started without a runtime. */
export function processLogOnly(logger: Logger): InstanceLogWriter {
  return async (instanceId, level, message, context) => {
    logger[level]({ instanceId, ...context }, message);
  };
}
