-- The event store (docs/event-store.md). Shared by the pglite and postgres adapters; the kurrentdb adapter
-- uses only es_subscriptions and es_dead_letters (its events live in KurrentDB).

-- One row per existing stream. `version` = number of events in it; the conditional UPDATE on this row is
-- the optimistic-concurrency check. A deleted stream has no row (version 0 again).
CREATE TABLE es_streams (
  stream_id    text        PRIMARY KEY,
  stream_type  text        NOT NULL,
  version      bigint      NOT NULL CHECK (version > 0),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The log. global_position is assigned at INSERT time, so commit order can differ from position order;
-- transaction_id (the writer's xid) is what readers order by and bound on (the gap-safe rule).
CREATE TABLE es_events (
  global_position bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
  stream_id       text        NOT NULL,
  stream_position bigint      NOT NULL CHECK (stream_position > 0),
  event_id        uuid        NOT NULL,
  event_type      text        NOT NULL,
  data            jsonb       NOT NULL,
  metadata        jsonb       NOT NULL DEFAULT '{}',
  -- Millisecond precision, the precision of a JS Date: an event's createdAt, used as an `until` bound,
  -- then includes that event.
  created_at      timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  CONSTRAINT es_events_event_id_key UNIQUE (event_id),
  CONSTRAINT es_events_stream_position_key UNIQUE (stream_id, stream_position)
);
CREATE INDEX es_events_transaction_order ON es_events (transaction_id, global_position);

-- One row per subscription (projection, sink). `checkpoint` is the adapter's opaque, zero-padded resume
-- point ('' = start); string order equals position order, so it is compared as text.
-- owner + lease_until: at most one running consumer per subscription, across processes.
CREATE TABLE es_subscriptions (
  subscription_id text        PRIMARY KEY,
  checkpoint      text        NOT NULL DEFAULT '',
  owner           text,
  lease_until     timestamptz,
  status          text        NOT NULL DEFAULT 'active',
  last_error      text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Events a subscription gave up on: the event's identity and position only, never its payload (a deleted
-- stream must leave no content behind; deleteStream removes its dead letters too).
CREATE TABLE es_dead_letters (
  subscription_id text        NOT NULL,
  event_id        uuid        NOT NULL,
  stream_id       text        NOT NULL,
  position        text        NOT NULL,
  event_type      text        NOT NULL,
  error           text        NOT NULL,
  attempts        integer     NOT NULL,
  failed_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription_id, event_id)
);
CREATE INDEX es_dead_letters_stream ON es_dead_letters (stream_id);

-- Appends p_events (a jsonb array of {id, type, data, metadata}) to p_stream in the caller's transaction.
-- p_expected: NULL = any (atomic increment, never a false conflict), 0 = the stream must not exist,
-- n = the stream must hold exactly n events. A mismatch raises SQLSTATE 'ES409' with the actual version
-- in DETAIL. Returns one row per event, in order.
CREATE FUNCTION es_append(
  p_stream      text,
  p_stream_type text,
  p_expected    bigint,
  p_events      jsonb,
  p_notify      boolean DEFAULT false
) RETURNS TABLE (
  transaction_id  text,
  stream_position bigint,
  global_position bigint,
  created_at      timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
  v_count   bigint := jsonb_array_length(p_events);
  v_version bigint;
  v_actual  bigint;
BEGIN
  IF v_count = 0 THEN
    RAISE EXCEPTION 'es_append: no events' USING ERRCODE = '22023';
  END IF;

  IF p_expected IS NULL THEN
    INSERT INTO es_streams AS s (stream_id, stream_type, version)
    VALUES (p_stream, p_stream_type, v_count)
    ON CONFLICT (stream_id) DO UPDATE SET version = s.version + v_count, updated_at = now()
    RETURNING s.version INTO v_version;
  ELSIF p_expected = 0 THEN
    INSERT INTO es_streams (stream_id, stream_type, version)
    VALUES (p_stream, p_stream_type, v_count)
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING version INTO v_version;
  ELSE
    UPDATE es_streams AS s SET version = s.version + v_count, updated_at = now()
     WHERE s.stream_id = p_stream AND s.version = p_expected
    RETURNING s.version INTO v_version;
  END IF;

  IF v_version IS NULL THEN
    SELECT s.version INTO v_actual FROM es_streams AS s WHERE s.stream_id = p_stream;
    RAISE EXCEPTION 'wrong expected version for stream %: expected %, actual %',
        p_stream, p_expected, coalesce(v_actual, 0)
      USING ERRCODE = 'ES409', DETAIL = coalesce(v_actual, 0)::text;
  END IF;

  RETURN QUERY
  WITH inserted AS (
    INSERT INTO es_events (stream_id, stream_position, event_id, event_type, data, metadata)
    SELECT p_stream, v_version - v_count + e.ord, (e.value->>'id')::uuid, e.value->>'type',
           e.value->'data', coalesce(e.value->'metadata', '{}'::jsonb)
      FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(value, ord)
     ORDER BY e.ord
    RETURNING es_events.transaction_id, es_events.stream_position, es_events.global_position,
              es_events.created_at
  )
  SELECT i.transaction_id::text, i.stream_position, i.global_position, i.created_at
    FROM inserted AS i ORDER BY i.stream_position;

  IF p_notify THEN
    PERFORM pg_notify('es_events', p_stream);
  END IF;
END;
$$;
