/**
 * The broker sinks' subscription names, apart from the sinks: naming one (checkpoints, dead-letter retries)
 * must not load its client library, which only a configured sink needs.
 */
export const AMQP_SUBSCRIPTION = 'sink-rabbitmq';
export const NATS_SUBSCRIPTION = 'sink-nats';
