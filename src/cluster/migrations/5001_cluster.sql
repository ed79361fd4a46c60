-- Cluster mode (src/cluster, docs/cluster.md): node membership, one lease per instance with a fencing
-- epoch, and the two guards that make a lost lease stop a node's writes in the database itself.

-- One row per running node (heartbeat every CLUSTER_HEARTBEAT_MS; dead once heartbeat_at is older than
-- CLUSTER_LEASE_MS).
CREATE TABLE IF NOT EXISTS zw_cluster_nodes (
  node_id      text        PRIMARY KEY,
  address      text        NOT NULL,
  mode         text        NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- One row per instance. node_id NULL: released (or never placed), free to take. The epoch grows by one
-- every time the lease changes hands; a write carries the epoch its node holds and is refused otherwise.
CREATE TABLE IF NOT EXISTS zw_instance_leases (
  instance_id text        PRIMARY KEY,
  node_id     text,
  epoch       bigint      NOT NULL DEFAULT 0,
  lease_until timestamptz NOT NULL DEFAULT '-infinity',
  acquired_at timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS zw_instance_leases_node ON zw_instance_leases (node_id);

-- Raises SQLSTATE ZW423 unless (p_node, p_epoch) holds the instance's lease. The row is locked FOR SHARE
-- until the caller's transaction ends, so a take-over (an UPDATE of the row) waits for a write that passed
-- the check to commit, and a write that comes after the take-over sees the new epoch and is refused.
-- Without a lease row the answer is p_allow_unleased (an instance's first event is written before it is
-- placed).
CREATE OR REPLACE FUNCTION zw_lease_check(
  p_instance        text,
  p_node            text,
  p_epoch           bigint,
  p_allow_unleased  boolean DEFAULT false
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  v_node  text;
  v_epoch bigint;
BEGIN
  SELECT l.node_id, l.epoch INTO v_node, v_epoch
    FROM zw_instance_leases AS l WHERE l.instance_id = p_instance FOR SHARE;
  IF NOT FOUND THEN
    IF p_allow_unleased THEN RETURN true; END IF;
    RAISE EXCEPTION 'instance % has no lease: node % may not write it', p_instance, p_node
      USING ERRCODE = 'ZW423', DETAIL = 'unleased';
  END IF;
  IF v_node IS DISTINCT FROM p_node OR v_epoch IS DISTINCT FROM p_epoch THEN
    RAISE EXCEPTION 'instance % is leased to % (epoch %): node % (epoch %) may not write it',
        p_instance, coalesce(v_node, 'nobody'), v_epoch, p_node, p_epoch
      USING ERRCODE = 'ZW423', DETAIL = coalesce(v_node, '');
  END IF;
  RETURN true;
END;
$$;

-- es_append behind the lease check, in one transaction. The stream's advisory lock comes first, as in
-- es_append itself: the lease check locks a row and so gives the transaction its id, which must come
-- after the stream lock (docs/event-store.md, "Appending").
CREATE OR REPLACE FUNCTION zw_fenced_append(
  p_instance    text,
  p_node        text,
  p_epoch       bigint,
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
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
  -- Creating the stream ('no_stream') is allowed before the instance has a lease: that is its first event.
  PERFORM zw_lease_check(p_instance, p_node, p_epoch, coalesce(p_expected = 0, false));
  RETURN QUERY SELECT a.transaction_id, a.stream_position, a.global_position, a.created_at
    FROM es_append(p_stream, p_stream_type, p_expected, p_events, p_notify) AS a;
END;
$$;
