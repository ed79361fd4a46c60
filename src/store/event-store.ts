/**
 * The EventStore (a log and its consumers on one object) for code that needs both, such as the sinks.
 * The adapters implement only EventLog; the consumers are the one SubscriptionHub on top of it.
 */
import type { Consumers, EventLog, EventStore } from './port.ts';
import { SubscriptionHub } from './subscriptions/hub.ts';
import type { SqlExecutor } from './sql.ts';

/** Consumers of `log`, kept in the subscription tables of `db` (es_subscriptions, es_dead_letters). */
export function createConsumers(log: EventLog, db: SqlExecutor, ownerId?: string): SubscriptionHub {
  return new SubscriptionHub(log, db, ownerId);
}

/**
 * One object with both ports. `deleteStream` also drops the stream's dead letters; `close` stops the
 * subscriptions before the log.
 */
export function composeEventStore(log: EventLog, consumers: SubscriptionHub): EventStore {
  const consumerPort: Consumers = consumers;
  return {
    kind: log.kind,
    ...(log.announcesEveryAppend !== undefined ? { announcesEveryAppend: log.announcesEveryAppend } : {}),
    append: (stream, events, options) => log.append(stream, events, options),
    readStream: (stream, options) => log.readStream(stream, options),
    readAll: (options) => log.readAll(options),
    streamVersion: (stream) => log.streamVersion(stream),
    async deleteStream(stream) {
      await log.deleteStream(stream);
      await consumers.forgetStream(stream);
    },
    compareCheckpoints: (a, b) => log.compareCheckpoints(a, b),
    headPosition: () => log.headPosition(),
    onAppended: (listener) => log.onAppended(listener),
    onNewEvents: (listener) => log.onNewEvents(listener),
    ping: () => log.ping(),
    async close() {
      await consumers.close();
      await log.close();
    },
    subscribe: (name, options, handler) => consumerPort.subscribe(name, options, handler),
    readCheckpoint: (name) => consumerPort.readCheckpoint(name),
    resetCheckpoint: (name, to) => consumerPort.resetCheckpoint(name, to),
    addDeadLetter: (name, event, error, attempts, note) =>
      consumerPort.addDeadLetter(name, event, error, attempts, note),
    listDeadLetters: (name) => consumerPort.listDeadLetters(name),
    findDeadLetters: (query) => consumerPort.findDeadLetters(query),
    deadLetter: (id) => consumerPort.deadLetter(id),
    removeDeadLetter: (name, eventId) => consumerPort.removeDeadLetter(name, eventId),
    capDeadLetters: (names, instanceId, max) => consumerPort.capDeadLetters(names, instanceId, max),
    pruneDeadLetters: (names, before) => consumerPort.pruneDeadLetters(names, before),
    process: (processor) => consumerPort.process(processor),
    onRetry: (name, retry) => consumerPort.onRetry(name, retry),
    retryDeadLetter: (id, requestedBy) => consumerPort.retryDeadLetter(id, requestedBy),
  };
}
