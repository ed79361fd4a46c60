-- GET /instance/all pages through instances in creation order (keyset: created_at, id).
CREATE INDEX IF NOT EXISTS rm_instances_by_creation ON rm_instances (created_at, id);
