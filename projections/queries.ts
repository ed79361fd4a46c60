/**
 * Read-model queries behind the REST API. Nothing here writes: projections own the tables.
 */
import type { SqlExecutor } from '../src/store/sql.ts';
import type { AdvancedSettings, ProxyView, SinkSettings } from '../src/domain/events.ts';

import type { ApiState } from '../machines/instance/index.ts';

export interface InstanceView {
  readonly id: string;
  readonly name: string;
  readonly state: ApiState;
  readonly connected: boolean;
  readonly loggedIn: boolean;
  readonly paired: boolean;
  readonly jid: string | null;
  readonly lid: string | null;
  readonly profileName: string | null;
  readonly qrcode: { readonly code: string; readonly expiresAt: string; readonly count: number } | null;
  readonly pairingCode: string | null;
  readonly webhookUrl: string | null;
  readonly events: string[];
  readonly rabbitmqEnable: boolean;
  readonly websocketEnable: boolean;
  readonly natsEnable: boolean;
  readonly advancedSettings: AdvancedSettings;
  readonly proxy: ProxyView | null;
  readonly lastDisconnect: {
    readonly reason: string;
    readonly code: number | null;
    readonly at: string;
  } | null;
  readonly version: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

interface InstanceRow {
  id: string;
  name: string;
  state: ApiState;
  connected: boolean;
  logged_in: boolean;
  paired: boolean;
  jid: string | null;
  lid: string | null;
  profile_name: string | null;
  qr_code: string | null;
  qr_expires_at: string | null;
  qr_count: number;
  pairing_code: string | null;
  webhook_url: string | null;
  events: string[] | string;
  rabbitmq_enable: boolean;
  websocket_enable: boolean;
  nats_enable: boolean;
  advanced_settings: AdvancedSettings | string;
  proxy: ProxyView | string | null;
  last_disconnect_reason: string | null;
  last_disconnect_code: number | null;
  last_disconnect_at: string | null;
  stream_version: number;
  created_at: string;
  updated_at: string;
}

const COLUMNS = `id, name, state, connected, logged_in, paired, jid, lid, profile_name, qr_code,
  to_char(qr_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS qr_expires_at, qr_count, pairing_code,
  webhook_url, events, rabbitmq_enable, websocket_enable, nats_enable, advanced_settings, proxy, last_disconnect_reason,
  last_disconnect_code, to_char(last_disconnect_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_disconnect_at,
  stream_version::int AS stream_version,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created_at,
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS updated_at`;

function json<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

function toView(row: InstanceRow): InstanceView {
  return {
    id: row.id,
    name: row.name,
    state: row.state,
    connected: row.connected,
    loggedIn: row.logged_in,
    paired: row.paired,
    jid: row.jid,
    lid: row.lid,
    profileName: row.profile_name,
    qrcode:
      row.qr_code && row.qr_expires_at
        ? { code: row.qr_code, expiresAt: row.qr_expires_at, count: row.qr_count }
        : null,
    pairingCode: row.pairing_code,
    webhookUrl: row.webhook_url,
    events: json<string[]>(row.events),
    rabbitmqEnable: row.rabbitmq_enable,
    websocketEnable: row.websocket_enable,
    natsEnable: row.nats_enable,
    advancedSettings: json<AdvancedSettings>(row.advanced_settings),
    proxy: row.proxy === null ? null : json<ProxyView>(row.proxy),
    lastDisconnect: row.last_disconnect_reason
      ? {
          reason: row.last_disconnect_reason,
          code: row.last_disconnect_code,
          at: row.last_disconnect_at ?? row.updated_at,
        }
      : null,
    version: Number(row.stream_version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The instance's event destinations, as the sinks and the settings routes see them. */
export function sinkSettingsOf(view: InstanceView): SinkSettings {
  return {
    webhookUrl: view.webhookUrl,
    events: view.events,
    rabbitmqEnable: view.rabbitmqEnable,
    websocketEnable: view.websocketEnable,
    natsEnable: view.natsEnable,
  };
}

export async function findInstance(db: SqlExecutor, idOrName: string): Promise<InstanceView | undefined> {
  const { rows } = await db.query<InstanceRow>(
    `SELECT ${COLUMNS} FROM rm_instances WHERE id = $1 OR lower(name) = lower($1) ORDER BY (id = $1) DESC LIMIT 1`,
    [idOrName],
  );
  return rows[0] ? toView(rows[0]) : undefined;
}

export async function listInstances(db: SqlExecutor): Promise<InstanceView[]> {
  const { rows } = await db.query<InstanceRow>(
    `SELECT ${COLUMNS} FROM rm_instances ORDER BY created_at, name`,
  );
  return rows.map(toView);
}

/** Where a page of instances ends: the creation time (as the view shows it) and id of its last one. */
export interface InstancePosition {
  readonly createdAt: string;
  readonly id: string;
}

/**
 * One page of instances in creation order, after `after` (from the start without it), and where the next
 * page starts when there is one. Creation times are the InstanceCreated event's, to the millisecond, so
 * the view's `createdAt` locates an instance exactly.
 */
export async function listInstancesPage(
  db: SqlExecutor,
  page: { readonly limit: number; readonly after?: InstancePosition | undefined },
): Promise<{ views: InstanceView[]; next: InstancePosition | undefined }> {
  const { limit, after } = page;
  const { rows } = after
    ? await db.query<InstanceRow>(
        `SELECT ${COLUMNS} FROM rm_instances WHERE (created_at, id) > ($2::timestamptz, $3)
          ORDER BY created_at, id LIMIT $1`,
        [limit + 1, after.createdAt, after.id],
      )
    : await db.query<InstanceRow>(`SELECT ${COLUMNS} FROM rm_instances ORDER BY created_at, id LIMIT $1`, [
        limit + 1,
      ]);
  const views = rows.slice(0, limit).map(toView);
  const last = views.at(-1);
  return {
    views,
    next: rows.length > limit && last ? { createdAt: last.createdAt, id: last.id } : undefined,
  };
}

/** The id of every instance, nothing else (what the runtime and the cluster need to know). */
export async function listInstanceIds(db: SqlExecutor): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM rm_instances');
  return rows.map((row) => row.id);
}

/**
 * When each paired instance was last active, in ms since the epoch: its `wa-` stream's last append (its
 * WhatsApp traffic; the stores on PostgreSQL keep it in es_streams), else when it was created. Instances
 * never paired are left out: restoring them opens nothing, so they come last.
 */
export async function lastActivityByInstance(db: SqlExecutor): Promise<Map<string, number>> {
  const { rows } = await db.query<{ id: string; at: string }>(
    `SELECT i.id, (extract(epoch FROM COALESCE(s.updated_at, i.created_at)) * 1000)::float8::text AS at
       FROM rm_instances i LEFT JOIN es_streams s ON s.stream_id = 'wa-' || i.id
      WHERE i.paired`,
  );
  return new Map(rows.map((row) => [row.id, Number(row.at)]));
}

/** How many instances are in each API state. */
export async function instanceCountsByState(db: SqlExecutor): Promise<Map<string, number>> {
  const { rows } = await db.query<{ state: string; count: number }>(
    'SELECT state, count(*)::int AS count FROM rm_instances GROUP BY state',
  );
  return new Map(rows.map((row) => [row.state, row.count]));
}

/** Whether the audit table has the instance's deletion (InstanceDeletionAudited). */
export async function deletionAudited(db: SqlExecutor, instanceId: string): Promise<boolean> {
  const { rows } = await db.query(
    'SELECT 1 FROM rm_instance_audit WHERE instance_id = $1 AND deleted_at IS NOT NULL',
    [instanceId],
  );
  return rows.length > 0;
}

/** Audit rows without a deletion whose instance is gone from rm_instances (a delete cut short). */
export async function unfinishedDeletions(
  db: SqlExecutor,
): Promise<{ instanceId: string; name: string; createdAt: string }[]> {
  const { rows } = await db.query<{ instance_id: string; name: string; created_at: Date }>(
    `SELECT a.instance_id, a.name, a.created_at FROM rm_instance_audit a
      WHERE a.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM rm_instances i WHERE i.id = a.instance_id)`,
  );
  return rows.map((r) => ({
    instanceId: r.instance_id,
    name: r.name,
    createdAt: new Date(r.created_at).toISOString(),
  }));
}

export async function instanceIdByTokenHash(db: SqlExecutor, tokenHash: string): Promise<string | undefined> {
  const { rows } = await db.query<{ instance_id: string }>(
    'SELECT instance_id FROM rm_instance_tokens WHERE token_hash = $1',
    [tokenHash],
  );
  return rows[0]?.instance_id;
}

/** The instance a token digest opens, read with the token in one round trip. */
export async function instanceByTokenHash(
  db: SqlExecutor,
  tokenHash: string,
): Promise<InstanceView | undefined> {
  const { rows } = await db.query<InstanceRow>(
    `SELECT ${COLUMNS} FROM rm_instances
      WHERE id = (SELECT instance_id FROM rm_instance_tokens WHERE token_hash = $1)`,
    [tokenHash],
  );
  return rows[0] ? toView(rows[0]) : undefined;
}

/** The hashes of the tokens that open an instance. */
export async function tokenHashesOf(db: SqlExecutor, instanceId: string): Promise<string[]> {
  const { rows } = await db.query<{ token_hash: string }>(
    'SELECT token_hash FROM rm_instance_tokens WHERE instance_id = $1',
    [instanceId],
  );
  return rows.map((row) => row.token_hash);
}

export interface LogEntry {
  readonly level: string;
  readonly message: string;
  readonly context: Record<string, unknown>;
  readonly at: string;
}

export async function instanceLogs(
  db: SqlExecutor,
  instanceId: string,
  query: { levels?: readonly string[]; limit: number; since?: string; until?: string },
): Promise<LogEntry[]> {
  const params: unknown[] = [instanceId, query.limit];
  let where = 'instance_id = $1';
  if (query.levels && query.levels.length > 0) {
    params.push(query.levels);
    where += ` AND level = ANY($${params.length})`;
  }
  // A valid date-time before year 1 (e.g. 0000-01-01) is out of PostgreSQL's range, and every entry is
  // after it anyway: no lower bound then.
  const since = query.since ? new Date(query.since) : undefined;
  if (since && !Number.isNaN(since.getTime()) && since.getUTCFullYear() >= 1) {
    params.push(since.toISOString());
    where += ` AND at >= $${params.length}`;
  }
  if (query.until) {
    params.push(query.until);
    where += ` AND at < $${params.length}`;
  }
  const { rows } = await db.query<{
    level: string;
    message: string;
    context: Record<string, unknown> | string;
    at: string;
  }>(
    `SELECT level, message, context, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
       FROM rm_instance_logs WHERE ${where} ORDER BY at DESC, event_id DESC LIMIT $2`,
    params,
  );
  return rows.map((r) => ({ level: r.level, message: r.message, context: json(r.context), at: r.at }));
}
