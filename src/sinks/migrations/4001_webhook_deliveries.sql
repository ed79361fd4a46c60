-- Webhook outbox and delivery log (src/sinks/webhook). The webhook subscription writes one row per
-- event and target, then moves its checkpoint; per-queue workers send the pending rows in id order.
-- Rows of a deleted instance are removed with it (bodies hold message content).
CREATE TABLE IF NOT EXISTS zw_webhook_deliveries (
  id               bigserial PRIMARY KEY,
  instance_id      text        NOT NULL,
  -- 'instance' (the instance's webhookUrl) or 'global' (WEBHOOK_GLOBAL_URL): separate ordered queues
  target           text        NOT NULL,
  url              text        NOT NULL,
  event_id         text        NOT NULL,
  event_name       text        NOT NULL,
  stream           text        NOT NULL,
  stream_position  integer     NOT NULL,
  position         text        NOT NULL,
  event_type       text        NOT NULL,
  stored_at        timestamptz NOT NULL,
  body             text        NOT NULL,
  -- 'pending' | 'delivered' | 'dead'
  status           text        NOT NULL DEFAULT 'pending',
  attempts         integer     NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_attempt_at  timestamptz,
  last_status_code integer,
  last_error       text,
  last_duration_ms integer,
  delivered_at     timestamptz,
  redelivery_of    bigint,
  created_at       timestamptz NOT NULL DEFAULT now()
);

-- A re-handled batch (crash before the checkpoint moved) must not enqueue an event twice.
CREATE UNIQUE INDEX IF NOT EXISTS zw_webhook_deliveries_event_target
  ON zw_webhook_deliveries (event_id, target) WHERE redelivery_of IS NULL;
-- Queue heads: pending rows of one (instance, target) in order.
CREATE INDEX IF NOT EXISTS zw_webhook_deliveries_queue
  ON zw_webhook_deliveries (instance_id, target, id) WHERE status = 'pending';
-- The delivery log, newest first.
CREATE INDEX IF NOT EXISTS zw_webhook_deliveries_log ON zw_webhook_deliveries (instance_id, id DESC);
-- Retention of delivered rows.
CREATE INDEX IF NOT EXISTS zw_webhook_deliveries_delivered_at
  ON zw_webhook_deliveries (delivered_at) WHERE status = 'delivered';
