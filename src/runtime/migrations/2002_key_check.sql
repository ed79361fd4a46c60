-- A check value of the session encryption key (an HMAC of a fixed label, never the key): a start with
-- another key is refused with a clear reason instead of failing every session and webhook later.
CREATE TABLE IF NOT EXISTS zw_key_check (
  name         text PRIMARY KEY,
  check_value  text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
