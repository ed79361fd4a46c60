-- Multi-step operations that must finish once begun, even across a crash (src/runtime/deletion.ts):
-- written before the first step, removed after the last; whatever is here at start is finished then.

-- A delete that was asked for: what its later steps need once the instance's read-model rows are gone
-- (the token digests: their reservation streams go with the instance). `audited`: the audit record is in.
CREATE TABLE IF NOT EXISTS zw_pending_deletions (
  instance_id   text        PRIMARY KEY,
  name          text        NOT NULL,
  created_at    text        NOT NULL,
  deleted_by    text        NOT NULL,
  requested_at  timestamptz NOT NULL DEFAULT now(),
  token_hashes  text[]      NOT NULL DEFAULT '{}',
  audited       boolean     NOT NULL DEFAULT false
);

-- Tokens a rotation replaced, until their reservation streams are revoked and deleted.
CREATE TABLE IF NOT EXISTS zw_retired_tokens (
  token_hash   text        PRIMARY KEY,
  instance_id  text        NOT NULL,
  retired_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS zw_retired_tokens_instance ON zw_retired_tokens (instance_id);
