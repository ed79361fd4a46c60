-- A replay (or a single redelivery) goes to one target: the instance's webhook, or the global webhook
-- (WEBHOOK_GLOBAL_URL), which only the admin may resend to (POST /admin/dead-letters/:id/retry).
ALTER TABLE zw_webhook_replays ADD COLUMN IF NOT EXISTS target text NOT NULL DEFAULT 'instance';
