-- Events a projection could not apply (a deterministic failure, retried first): skipped so the projection
-- keeps going, recorded here so /health and /metrics raise the alarm and an operator can look at them.
-- Not one of any projection's tables: a rebuild keeps the record (and re-records what still fails).

CREATE TABLE IF NOT EXISTS rm_projection_poison (
  projection  text NOT NULL,
  position    text NOT NULL,
  event_id    text NOT NULL,
  stream      text NOT NULL,
  event_type  text NOT NULL,
  error       text NOT NULL,
  skipped_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, position)
);
