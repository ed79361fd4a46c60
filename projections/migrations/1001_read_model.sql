-- The read model every REST query reads. Rebuildable from the event log (POST /admin/projections/:name/rebuild).

CREATE TABLE IF NOT EXISTS rm_projection_checkpoints (
  projection  text PRIMARY KEY,
  checkpoint  text NOT NULL DEFAULT '',
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS rm_instances (
  id                      text PRIMARY KEY,
  name                    text NOT NULL,
  state                   text NOT NULL,
  connected               boolean NOT NULL DEFAULT false,
  logged_in               boolean NOT NULL DEFAULT false,
  paired                  boolean NOT NULL DEFAULT false,
  jid                     text,
  lid                     text,
  profile_name            text,
  qr_code                 text,
  qr_expires_at           timestamptz,
  qr_count                integer NOT NULL DEFAULT 0,
  pairing_code            text,
  pairing_phone           text,
  webhook_url             text,
  events                  jsonb NOT NULL DEFAULT '["MESSAGE"]',
  rabbitmq_enable         boolean NOT NULL DEFAULT false,
  websocket_enable        boolean NOT NULL DEFAULT false,
  nats_enable             boolean NOT NULL DEFAULT false,
  advanced_settings       jsonb NOT NULL,
  proxy                   jsonb,
  last_disconnect_reason  text,
  last_disconnect_code    integer,
  last_disconnect_at      timestamptz,
  stream_version          bigint NOT NULL DEFAULT 0,
  created_at              timestamptz NOT NULL,
  updated_at              timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rm_instances_name_key ON rm_instances (lower(name));

CREATE TABLE IF NOT EXISTS rm_instance_tokens (
  token_hash   text PRIMARY KEY,
  instance_id  text NOT NULL
);
CREATE INDEX IF NOT EXISTS rm_instance_tokens_instance ON rm_instance_tokens (instance_id);

CREATE TABLE IF NOT EXISTS rm_instance_logs (
  event_id     text PRIMARY KEY,
  instance_id  text NOT NULL,
  level        text NOT NULL,
  message      text NOT NULL,
  context      jsonb NOT NULL DEFAULT '{}',
  at           timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rm_instance_logs_by_instance ON rm_instance_logs (instance_id, at DESC);

CREATE TABLE IF NOT EXISTS rm_messages (
  instance_id  text NOT NULL,
  message_id   text NOT NULL,
  chat_jid     text NOT NULL,
  sender_jid   text,
  from_me      boolean NOT NULL,
  message_type text NOT NULL,
  text         text,
  status       text,
  push_name    text,
  timestamp    timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (instance_id, message_id)
);
CREATE INDEX IF NOT EXISTS rm_messages_chat ON rm_messages (instance_id, chat_jid, timestamp DESC);

CREATE TABLE IF NOT EXISTS rm_labels (
  instance_id  text NOT NULL,
  label_id     text NOT NULL,
  name         text NOT NULL,
  color        integer,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (instance_id, label_id)
);

-- Who deleted what and when: the only trace an instance leaves after DELETE /instance/delete/:id.
CREATE TABLE IF NOT EXISTS rm_instance_audit (
  instance_id  text PRIMARY KEY,
  name         text NOT NULL,
  created_at   timestamptz NOT NULL,
  deleted_at   timestamptz,
  deleted_by   text
);
