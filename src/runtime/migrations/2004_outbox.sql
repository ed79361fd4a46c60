-- The outbox's index (src/runtime/outbox): what the owner of an instance needs at hand about its sends,
-- kept from the instance's `outbox-<id>` stream, which stays the truth. `applied_version` is how far the
-- index has read that stream: a node that adopts the instance reads the stream on from there, so an index
-- write a crash cut short is made up for, never lost.
CREATE TABLE IF NOT EXISTS zw_outbox_instances (
  instance_id      text        PRIMARY KEY,
  applied_version  bigint      NOT NULL DEFAULT 0,
  pacing           jsonb,
  -- The current restriction's pause (SendingRestricted), so a restart keeps it.
  paused_until     timestamptz,
  pause_code       text,
  pause_reason     text,
  pause_streak     integer     NOT NULL DEFAULT 0
);

-- One row per send. `request` holds what a pending send still needs to go out (its text), and is
-- emptied once the send is done. Idempotency-Keys are looked up in the owner's memory (48 hours of them,
-- loaded from here): a key may come back after that, so it is indexed, not unique.
CREATE TABLE IF NOT EXISTS zw_outbox_sends (
  instance_id      text        NOT NULL,
  send_id          text        NOT NULL,
  message_id       text        NOT NULL,
  recipient        text        NOT NULL,
  state            text        NOT NULL,
  requested_at     timestamptz NOT NULL,
  send_at          timestamptz,
  finished_at      timestamptz,
  idempotency_key  text,
  request_hash     text,
  request          jsonb,
  outcome          jsonb,
  PRIMARY KEY (instance_id, send_id)
);
CREATE INDEX IF NOT EXISTS zw_outbox_sends_key ON zw_outbox_sends (instance_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS zw_outbox_sends_open ON zw_outbox_sends (instance_id)
  WHERE state IN ('queued', 'scheduled');
