-- The webhook's queues keep a position in the log instead of copies of events (src/sinks/webhook): one row
-- per (instance, target) that ever needed one, with the position through which its events are settled
-- (delivered or dead-lettered), whether the log's reader feeds it (attached) or it reads its own backlog
-- from the log (detached: a receiver down, a slow one, a restart), and what the API shows about it.
CREATE TABLE IF NOT EXISTS zw_webhook_queues (
  instance_id       text        NOT NULL,
  -- 'instance' (the instance's webhookUrl) or 'global' (WEBHOOK_GLOBAL_URL)
  target            text        NOT NULL,
  -- every event of the queue at or before this log position is settled
  cursor            text        NOT NULL,
  attached          boolean     NOT NULL,
  -- 'delivering' | 'paused' (receiver down) | 'refusing' (the last event was refused)
  state             text        NOT NULL DEFAULT 'delivering',
  since             timestamptz,
  failures          integer     NOT NULL DEFAULT 0,
  last_error        text,
  last_status_code  integer,
  last_attempt_at   timestamptz,
  last_delivered_at timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, target)
);

-- Rewinds asked for with POST /instance/:id/webhook/replay (and single redeliveries): the range, how far
-- it got, and its state. Resumed after a restart.
CREATE TABLE IF NOT EXISTS zw_webhook_replays (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  instance_id   text        NOT NULL,
  -- exclusive lower bound and inclusive upper bound of the range, log positions
  after_pos     text        NOT NULL,
  through_pos   text        NOT NULL,
  -- bounds given as times instead (events stored at or after from_time, at or before to_time)
  from_time     timestamptz,
  to_time       timestamptz,
  -- a single event (a redelivery) when set: only it is sent
  event_id      text,
  cursor        text        NOT NULL,
  state         text        NOT NULL DEFAULT 'running',
  sent          integer     NOT NULL DEFAULT 0,
  last_error    text,
  requested_by  text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE INDEX IF NOT EXISTS zw_webhook_replays_instance ON zw_webhook_replays (instance_id, id DESC);
CREATE INDEX IF NOT EXISTS zw_webhook_replays_running ON zw_webhook_replays (id) WHERE state = 'running';

-- From the row-based outbox (zw_webhook_deliveries): a queue with rows still waiting resumes just before the
-- first of them (what was delivered after it straight from memory may arrive again, with the same event id);
-- dead rows become dead letters of the one store. Then the table goes. A function, so that
-- `npm run migrate-from-pglite` converts the rows it copies from an older PGlite store the same way.
CREATE OR REPLACE FUNCTION zw_webhook_deliveries_convert() RETURNS void LANGUAGE plpgsql AS $convert$
BEGIN
  IF to_regclass('zw_webhook_deliveries') IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO zw_webhook_queues (instance_id, target, cursor, attached)
  SELECT instance_id, target,
         CASE WHEN split_part(min(position), ':', 2)::numeric > 0
              THEN split_part(min(position), ':', 1) || ':' ||
                   lpad((split_part(min(position), ':', 2)::numeric - 1)::text, 20, '0')
              ELSE lpad((split_part(min(position), ':', 1)::numeric - 1)::text, 20, '0') || ':99999999999999999999'
         END,
         false
    FROM zw_webhook_deliveries
   WHERE status = 'pending' AND redelivery_of IS NULL AND position ~ '^[0-9]{20}:[0-9]{20}$'
   GROUP BY instance_id, target
  ON CONFLICT (instance_id, target) DO NOTHING;
  INSERT INTO es_dead_letters (subscription_id, event_id, stream_id, position, event_type, error, attempts,
                               failed_at, instance_id, detail)
  SELECT CASE WHEN target = 'global' THEN 'sink-webhook-global' ELSE 'sink-webhook' END,
         event_id::uuid, stream, position, event_type, coalesce(last_error, 'dead'), attempts,
         coalesce(last_attempt_at, created_at), instance_id,
         jsonb_build_object('target', target, 'url', url, 'eventName', event_name,
                            'statusCode', last_status_code, 'storedAt', stored_at, 'reason', 'refused')
    FROM zw_webhook_deliveries
   WHERE status = 'dead' AND event_id ~ '^[0-9a-fA-F-]{36}$'
  ON CONFLICT (subscription_id, event_id) DO UPDATE
     SET instance_id = EXCLUDED.instance_id, detail = EXCLUDED.detail;
  DROP TABLE zw_webhook_deliveries;
END
$convert$;

SELECT zw_webhook_deliveries_convert();
