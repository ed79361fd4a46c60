/**
 * The projections zapwire runs, started: `instances` and `instance_logs` always; `messages` only with
 * MESSAGES_PROJECTION (nothing on the API reads it). Without it, its tables are emptied and its position
 * forgotten at start: no message content stays behind, and turning it on later rebuilds it from the log.
 */
import type { Logger } from 'pino';
import type { EventStore } from '../src/store/port.ts';
import type { SqlDatabase } from '../src/store/sql.ts';
import { instanceLogsProjection } from './instance-logs.ts';
import { instancesProjection } from './instances.ts';
import { clearMessagesReadModel, messagesProjection } from './messages.ts';
import { ProjectionRunner } from './runner.ts';

export async function startProjections(
  store: EventStore,
  db: SqlDatabase,
  logger: Logger,
  config: { readonly messagesProjection: boolean },
): Promise<ProjectionRunner> {
  if (!config.messagesProjection) await clearMessagesReadModel(db);
  const projections = [instancesProjection, instanceLogsProjection];
  if (config.messagesProjection) projections.push(messagesProjection);
  const runner = new ProjectionRunner(store, db, projections, logger);
  await runner.start();
  return runner;
}
