-- Leases renewed per node, not per lease (docs/cluster.md, "Leases and fencing epochs"): a node's row
-- carries the lease of every instance it holds. Renewing updated every lease row each heartbeat before
-- (10 000 idle instances: 50 000 row updates per 10 s and a bloated table); now it is one row per node.
--
-- incarnation: random, new each time the node (re-)registers (every start, and when its own lease
--   expired). A lease row names the incarnation it was granted to, so the leases of an earlier run, or of
--   a run whose lease expired, are never mistaken for the current one's.
-- lease_until: the node's lease, and so the lease of every instance it holds. Taking over another node's
--   instances starts by deleting that node's row once this has passed; the delete and the node's own
--   renewal (an UPDATE of the row) touch the same row, so one waits for the other and never both succeed.
-- assigned: bumped when another node places a new instance on this node, so the node reads its lease rows
--   only when they changed, not every heartbeat.
ALTER TABLE zw_cluster_nodes ADD COLUMN IF NOT EXISTS incarnation text NOT NULL DEFAULT '';
ALTER TABLE zw_cluster_nodes ADD COLUMN IF NOT EXISTS lease_until timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE zw_cluster_nodes ADD COLUMN IF NOT EXISTS assigned bigint NOT NULL DEFAULT 0;

-- incarnation: the holder's incarnation (NULL while free). lease_until now says since when a free lease is
-- free ('-infinity': never held). freed_from: the node whose lease expired, until another node takes it.
ALTER TABLE zw_instance_leases ADD COLUMN IF NOT EXISTS incarnation text;
ALTER TABLE zw_instance_leases ADD COLUMN IF NOT EXISTS freed_from text;
-- Rows renewed the earlier way belong to no incarnation: free them (their epochs grow when taken).
UPDATE zw_instance_leases SET node_id = NULL, lease_until = '-infinity'
 WHERE node_id IS NOT NULL AND incarnation IS NULL;
DROP INDEX IF EXISTS zw_instance_leases_node;
CREATE INDEX IF NOT EXISTS zw_instance_leases_holder ON zw_instance_leases (node_id, incarnation);
CREATE INDEX IF NOT EXISTS zw_instance_leases_free ON zw_instance_leases (lease_until, instance_id)
  WHERE node_id IS NULL;
