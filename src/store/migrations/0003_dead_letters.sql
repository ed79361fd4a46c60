-- One dead-letter store for every reader of the log (projections, webhook, RabbitMQ, NATS): an id to
-- address an entry from the API (list, retry), the instance it concerns (the webhook's and the brokers'
-- entries are per instance; a tenant sees only its own), and what the reader recorded about the failure
-- (`detail`: e.g. the webhook's target, URL and status code). Still never the event's payload: a retry
-- reads the event from the log, and a deleted stream leaves nothing behind.
ALTER TABLE es_dead_letters ADD COLUMN IF NOT EXISTS id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE es_dead_letters ADD COLUMN IF NOT EXISTS instance_id text;
ALTER TABLE es_dead_letters ADD COLUMN IF NOT EXISTS detail jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE UNIQUE INDEX IF NOT EXISTS es_dead_letters_id ON es_dead_letters (id);
CREATE INDEX IF NOT EXISTS es_dead_letters_instance ON es_dead_letters (instance_id, id DESC)
  WHERE instance_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS es_dead_letters_failed_at ON es_dead_letters (failed_at);
