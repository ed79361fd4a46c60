-- Baileys auth state (creds + Signal keys) of each instance, sealed with AES-256-GCM by the adapter
-- (src/whatsapp/baileys/auth-store.ts). `key_ref` is an HMAC of the key's type and id, so contact
-- identifiers (phone numbers, LIDs) that Baileys puts into key ids never appear in clear text here.
-- Removing a session deletes every row of the instance.
CREATE TABLE IF NOT EXISTS wa_auth_state (
  instance_id text        NOT NULL,
  category    text        NOT NULL,
  key_ref     text        NOT NULL,
  sealed      bytea       NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, category, key_ref)
);
