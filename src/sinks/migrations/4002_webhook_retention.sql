-- Retention and caps of the webhook delivery log (src/sinks/webhook): dead rows are pruned by age
-- (WEBHOOK_RETENTION_DEAD_HOURS) and capped per instance (WEBHOOK_MAX_DEAD, oldest removed first);
-- redeliveries look up a pending copy of the same delivery before queueing another one.
CREATE INDEX IF NOT EXISTS zw_webhook_deliveries_dead
  ON zw_webhook_deliveries (instance_id, id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS zw_webhook_deliveries_dead_at
  ON zw_webhook_deliveries (last_attempt_at) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS zw_webhook_deliveries_redelivery
  ON zw_webhook_deliveries (redelivery_of) WHERE redelivery_of IS NOT NULL;
