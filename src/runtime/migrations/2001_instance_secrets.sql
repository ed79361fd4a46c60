-- Secrets kept out of the event log (see src/runtime/secrets.ts); removed with the instance.
CREATE TABLE IF NOT EXISTS zw_instance_secrets (
  instance_id  text NOT NULL,
  kind         text NOT NULL,
  sealed       text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, kind)
);
