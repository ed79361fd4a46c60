-- es_append takes a per-stream lock before it writes, so that stream order and transaction-id order agree
-- (the comment inside says why). Same signature and behaviour otherwise.
CREATE OR REPLACE FUNCTION es_append(
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
  -- One append per stream at a time, taken before this transaction writes anything and so before it gets
  -- its transaction id: a later append to the stream then always has a higher id. Readers order by
  -- transaction id (the gap-safe rule), so without this two racing 'any' appends could be read out of
  -- stream order (the later versions first) when the one that waited had taken its id earlier.
  PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));

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
