-- Projections keep their state in the store's consumer tables, like every other reader of the log (the
-- consumer runtime, src/store/consumers): checkpoints in es_subscriptions, named `projection:<name>` (still
-- moved in the batch's transaction, with a compare-and-set), and the events a projection skipped in
-- es_dead_letters, subscription `projection:<name>`, listed and retried through /admin/dead-letters. Both
-- tables live in the read-model database in every deployment (with KurrentDB too). The rows of the former
-- tables are copied, then those tables go.

INSERT INTO es_subscriptions (subscription_id, checkpoint, updated_at)
SELECT 'projection:' || projection, checkpoint, updated_at FROM rm_projection_checkpoints
ON CONFLICT (subscription_id) DO NOTHING;

-- A skipped event was tried three times (the runner's POISON_ATTEMPTS). Ids that are not UUIDs cannot be
-- events of any adapter (every one of them stores UUIDs): such a row could never be retried, and is left out.
INSERT INTO es_dead_letters (subscription_id, event_id, stream_id, position, event_type, error, attempts,
                             failed_at, detail)
SELECT 'projection:' || projection, event_id::uuid, stream, position, event_type, error, 3, skipped_at,
       jsonb_build_object('projection', projection)
  FROM rm_projection_poison
 WHERE event_id ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
ON CONFLICT (subscription_id, event_id) DO NOTHING;

DROP TABLE rm_projection_poison;
DROP TABLE rm_projection_checkpoints;
