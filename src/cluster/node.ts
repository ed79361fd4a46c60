/**
 * This node's part in the cluster (docs/cluster.md): membership and the node's lease (its row in
 * zw_cluster_nodes), instance leases with fencing epochs (zw_instance_leases), placement and rebalancing,
 * failover and hand-over. It implements the ClusterView port and gives the store and the WhatsApp adapter
 * their fencing tokens. Every time comparison uses the database's clock, so nodes need not agree on time.
 *
 * An instance lease is held by a node incarnation (a node id and a random value new at each registration),
 * and it lasts as long as that node's own lease: renewing is one UPDATE of the node's row, whatever the
 * number of instances. A node whose lease expired is deleted by the next node that looks for work, which
 * frees its instances in the same statement; the node's renewal and that delete touch the same row, so
 * exactly one of them wins. While its row is there, nobody else can have taken its instances.
 *
 * One tick (every CLUSTER_HEARTBEAT_MS, and at once when another node releases or places leases):
 *  1. renew this node's lease (one UPDATE). If another node deleted the row (the lease had expired), register
 *     again as a new incarnation: every instance held by the old one is dropped here (its socket closed)
 *     without writing anything. If another node placed instances here since the last tick, read this node's
 *     lease rows once;
 *  2. now and then (not every tick): give every known instance a lease row, remove rows of deleted ones;
 *  3. free the instances of nodes whose lease expired, take free leases up to this node's share, release
 *     what is above it (hand-over).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { SqlDatabase } from '../store/sql.ts';
import type { AppendFencing, StreamFence } from '../store/port.ts';
import type { SessionFence, SessionFencing } from '../whatsapp/port.ts';
import type {
  ClusterMode,
  ClusterNode,
  ClusterOverview,
  ClusterOverviewInstance,
  ClusterView,
  InstanceOwner,
} from './port.ts';

/** What the runtime does when this node gains, loses or gives away an instance. */
export interface OwnedInstances {
  /** This node now holds the lease: restore the instance (paced). */
  adopt(instanceId: string): void;
  /** The lease is gone (taken over): close the socket at once, write nothing. */
  drop(instanceId: string): void;
  /** Hand-over: record the close and close the socket; resolves before the lease is released. */
  handOver(instanceId: string): Promise<void>;
  /** Instances with a live WhatsApp connection on this node (the tick closes any it holds no lease for). */
  connected(): string[];
  /**
   * Whether rebalancing may move the instance now. Not while a user is pairing it (a QR on screen, or
   * connecting): the next owner would restore a never-paired instance as disconnected and the QR would die.
   */
  movable(instanceId: string): boolean;
  /**
   * Every instance that exists (the read model), and those whose delete is still to finish: those keep
   * their lease row, so that their owner finishes the delete.
   */
  instanceIds(): Promise<string[]>;
}

export interface ClusterNodeOptions {
  readonly db: SqlDatabase;
  readonly logger: Logger;
  readonly nodeId: string;
  /** CLUSTER_ADVERTISE_URL: how other nodes reach this one. */
  readonly address: string;
  /**
   * 'cluster' (CLUSTER_ENABLED): instances spread over every live node. 'single' (the default): the
   * oldest live node owns every instance and any other process is a follower that owns nothing.
   */
  readonly mode: ClusterMode;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  /** Most leases released per tick by rebalancing (a joining node takes its share this fast). */
  readonly movesPerTick: number;
  /**
   * No other process can share this database (the embedded PostgreSQL, guarded by owner.json): leases of
   * an earlier, crashed run are taken at once instead of after they expire.
   */
  readonly exclusive?: boolean;
  /** How often lease rows are matched against the instances that exist (default 60 s); at start, always. */
  readonly reconcileMs?: number;
}

interface Held {
  readonly epoch: number;
  readonly acquiredAt: number;
}

const NOTIFY_CHANNEL = 'zw_cluster';
/** Lease rows of instances that no longer exist are removed once this old and free. */
const ORPHAN_ROW_AGE_MS = 60_000;

/** This node as CLUSTER_* describe it; RESTORE_CONCURRENCY also paces how many leases it moves a tick. */
export function clusterMemberOf(
  config: Pick<Config, 'cluster' | 'restoreConcurrency' | 'databaseUrl'>,
  db: SqlDatabase,
  logger: Logger,
): ClusterMember {
  return new ClusterMember({
    db,
    logger,
    nodeId: config.cluster.nodeId ?? defaultNodeId(),
    address: config.cluster.advertiseUrl,
    mode: config.cluster.enabled ? 'cluster' : 'single',
    leaseMs: config.cluster.leaseMs,
    heartbeatMs: config.cluster.heartbeatMs,
    // Under RESTORE_CONCURRENCY=auto, 4 hand-overs a tick (the restore plan paces the logins themselves).
    movesPerTick: config.restoreConcurrency === 'auto' ? 4 : config.restoreConcurrency,
    // The embedded PostgreSQL serves one process (owner.json): no other node can hold a live lease.
    exclusive: config.databaseUrl === undefined,
  });
}

export function defaultNodeId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

function newIncarnation(): string {
  return randomBytes(12).toString('hex');
}

export interface ClusterCounters {
  renewFailures: number;
  handOvers: number;
  takenOver: number;
  lost: number;
}

export class ClusterMember implements ClusterView {
  readonly selfId: string;
  readonly counters: ClusterCounters = { renewFailures: 0, handOvers: 0, takenOver: 0, lost: 0 };
  private readonly held = new Map<string, Held>();
  private owned: OwnedInstances | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopping = false;
  private unlisten: (() => Promise<void>) | undefined;
  /** performance.now() until which every lease this node renewed is certainly still its own. */
  private validUntil = 0;
  private lastTickError: string | undefined;
  /** This run's registration; a new one whenever the node's lease expired before it was renewed. */
  private currentIncarnation = newIncarnation();
  /** zw_cluster_nodes.assigned as last seen: another node placed instances here when it changed. */
  private assignedSeen: string | undefined;
  /** performance.now() of the last match of lease rows against the instances that exist. */
  private reconciledAt = -Infinity;

  constructor(private readonly options: ClusterNodeOptions) {
    this.selfId = options.nodeId;
  }

  /** This node's current registration: forwarded requests are signed for it (src/cluster/forwarding.ts). */
  incarnation(): string {
    return this.currentIncarnation;
  }

  /** Registers the node and runs the first tick (leases taken, instances adopted), then keeps ticking. */
  async start(owned: OwnedInstances): Promise<void> {
    this.owned = owned;
    const { db } = this.options;
    if (this.options.exclusive) {
      // The embedded database serves one zapwire at a time: whatever other node rows exist are this
      // DATA_DIR's earlier runs, dead. Their leases are free now (their epochs still grow on take-over).
      await db.query(`DELETE FROM zw_cluster_nodes WHERE node_id <> $1`, [this.selfId]);
      await db.query(
        `UPDATE zw_instance_leases SET freed_from = NULL, node_id = NULL, incarnation = NULL, lease_until = '-infinity'
          WHERE node_id IS NOT NULL`,
      );
    }
    await this.register(performance.now());
    // Other nodes' releases wake this one at once. Alone on the embedded database there are none, and
    // a LISTEN would keep a PostgreSQL connection (a process of ~16 MB) open for nothing.
    if (db.listen && !this.options.exclusive) {
      this.unlisten = await db
        .listen(NOTIFY_CHANNEL, (payload) => {
          if (payload !== this.selfId) this.kick();
        })
        .catch(() => undefined);
    }
    await this.tick();
    this.schedule();
  }

  /** Hands every instance over (close, record, release) and leaves the cluster. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking?.catch(() => undefined);
    await Promise.all([...this.held.keys()].map((id) => this.release(id)));
    // Whatever is still held (a release that failed) is freed with the node's row.
    await this.options.db
      .query(
        `WITH freed AS (
           UPDATE zw_instance_leases SET node_id = NULL, incarnation = NULL, lease_until = now()
            WHERE node_id = $1 AND incarnation = $2
         )
         DELETE FROM zw_cluster_nodes WHERE node_id = $1 AND incarnation = $2`,
        [this.selfId, this.currentIncarnation],
      )
      .catch(() => undefined);
    await this.notify();
    await this.unlisten?.().catch(() => undefined);
  }

  // ------------------------------------------------------------------ ClusterView

  async ownerOf(instanceId: string): Promise<InstanceOwner | undefined> {
    const { rows } = await this.options.db.query<{
      node_id: string;
      address: string;
      epoch: string;
      incarnation: string;
      lease_until: Date;
    }>(
      `SELECT l.node_id, n.address, l.epoch::text AS epoch, n.incarnation, n.lease_until
         FROM zw_instance_leases l
         JOIN zw_cluster_nodes n ON n.node_id = l.node_id AND n.incarnation = l.incarnation
        WHERE l.instance_id = $1
          AND (n.lease_until > now() OR (n.node_id = $2 AND n.incarnation = $3))`,
      // This node's own row proves its leases (nobody can take them without deleting it), also in the
      // moment its renewal is late.
      [instanceId, this.selfId, this.currentIncarnation],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      instanceId,
      nodeId: row.node_id,
      address: row.address,
      epoch: Number(row.epoch),
      incarnation: row.incarnation,
      leaseUntil: new Date(row.lease_until),
      self: row.node_id === this.selfId && row.incarnation === this.currentIncarnation,
    };
  }

  async nodes(): Promise<ClusterNode[]> {
    const { rows } = await this.options.db.query<{
      node_id: string;
      address: string;
      started_at: Date;
      heartbeat_at: Date;
      instances: number;
    }>(
      `SELECT n.node_id, n.address, n.started_at, n.heartbeat_at,
              (SELECT count(*)::int FROM zw_instance_leases l
                WHERE l.node_id = n.node_id AND l.incarnation = n.incarnation) AS instances
         FROM zw_cluster_nodes n
        WHERE n.lease_until > now()
        ORDER BY n.started_at, n.node_id`,
    );
    return rows.map((r) => ({
      nodeId: r.node_id,
      address: r.address,
      startedAt: new Date(r.started_at),
      heartbeatAt: new Date(r.heartbeat_at),
      instances: r.instances,
    }));
  }

  // ------------------------------------------------------------------ what the runtime and stores ask

  /** Whether this node holds the instance's lease and it has certainly not expired (the socket gate). */
  holds(instanceId: string): boolean {
    return this.held.has(instanceId) && performance.now() < this.validUntil;
  }

  /** Instances this node holds, with the epoch and how long ago each was taken. */
  heldInstances(): { instanceId: string; epoch: number; heldMs: number }[] {
    const now = performance.now();
    return [...this.held].map(([instanceId, h]) => ({
      instanceId,
      epoch: h.epoch,
      heldMs: Math.round(now - h.acquiredAt),
    }));
  }

  /** GET /admin/cluster: live nodes with their instances and lease ages, and instances nobody holds. */
  async overview(): Promise<ClusterOverview> {
    const nodes = await this.nodes();
    const { rows } = await this.options.db.query<{
      instance_id: string;
      node_id: string | null;
      epoch: string;
      held_ms: number | null;
      expires_in_ms: number | null;
    }>(
      `SELECT l.instance_id, n.node_id, l.epoch::text AS epoch,
              (extract(epoch FROM now() - l.acquired_at) * 1000)::bigint::int AS held_ms,
              greatest(-1, least(2147483647, (extract(epoch FROM n.lease_until - now()) * 1000)))::int AS expires_in_ms
         FROM zw_instance_leases l
         LEFT JOIN zw_cluster_nodes n ON n.node_id = l.node_id AND n.incarnation = l.incarnation
        ORDER BY l.instance_id`,
    );
    const live = new Set(nodes.map((n) => n.nodeId));
    const byNode = new Map<string, ClusterOverviewInstance[]>();
    const unowned: string[] = [];
    for (const row of rows) {
      if (
        row.node_id === null ||
        row.expires_in_ms === null ||
        row.expires_in_ms <= 0 ||
        !live.has(row.node_id)
      ) {
        unowned.push(row.instance_id);
        continue;
      }
      const list = byNode.get(row.node_id) ?? [];
      list.push({
        instanceId: row.instance_id,
        epoch: Number(row.epoch),
        leaseAgeMs: row.held_ms ?? 0,
        expiresInMs: row.expires_in_ms,
      });
      byNode.set(row.node_id, list);
    }
    return {
      selfId: this.selfId,
      mode: this.options.mode,
      leaseMs: this.options.leaseMs,
      heartbeatMs: this.options.heartbeatMs,
      nodes: nodes.map((n) => ({
        nodeId: n.nodeId,
        address: n.address,
        self: n.nodeId === this.selfId,
        startedAt: n.startedAt.toISOString(),
        heartbeatAt: n.heartbeatAt.toISOString(),
        instances: byNode.get(n.nodeId) ?? [],
      })),
      unowned,
    };
  }

  /** For /health: this node's id, how many leases it holds and whether they are all current. */
  health(): { nodeId: string; mode: ClusterMode; instances: number; leasesHeld: boolean; error?: string } {
    return {
      nodeId: this.selfId,
      mode: this.options.mode,
      instances: this.held.size,
      leasesHeld: this.held.size === 0 || performance.now() < this.validUntil,
      ...(this.lastTickError ? { error: this.lastTickError } : {}),
    };
  }

  /** Fencing of appends to `instance-<id>`, `wa-<id>` and `outbox-<id>` (the SQL event store). */
  readonly appendFencing: AppendFencing = {
    tokenOf: async (stream) => {
      const instanceId = instanceOfStream(stream);
      if (instanceId === undefined) return undefined;
      return { instanceId, ...(await this.tokenOf(instanceId)) };
    },
    refused: (fence: StreamFence) => this.refused(fence.instanceId, fence.epoch),
  };

  /** Fencing of WhatsApp session writes (the Baileys auth store). */
  readonly sessionFencing: SessionFencing = {
    tokenOf: (instanceId) => this.tokenOf(instanceId),
    refused: (instanceId) => this.refused(instanceId, this.held.get(instanceId)?.epoch),
  };

  /**
   * Places a new instance on the least-loaded live node (this one in a tie), unless it has a lease row
   * already. In single mode that is the oldest node, the one that owns everything. Another node learns of
   * it from its `assigned` count (and at once from the NOTIFY).
   */
  async place(instanceId: string): Promise<void> {
    const target = await this.leastLoaded();
    const { db } = this.options;
    const { rows } = await db.query<{ epoch: string }>(
      `WITH target AS (
         SELECT node_id, incarnation FROM zw_cluster_nodes
          WHERE node_id = $2 AND (lease_until > now() OR (node_id = $3 AND incarnation = $4))
       ), placed AS (
         INSERT INTO zw_instance_leases (instance_id, node_id, incarnation, epoch, lease_until, acquired_at)
         SELECT $1, node_id, incarnation, 1, '-infinity', now() FROM target
         ON CONFLICT (instance_id) DO NOTHING
         RETURNING epoch
       ), told AS (
         UPDATE zw_cluster_nodes SET assigned = assigned + 1
          WHERE node_id = $2 AND node_id <> $3 AND EXISTS (SELECT 1 FROM placed)
       )
       SELECT epoch::text AS epoch FROM placed`,
      [instanceId, target ?? null, this.selfId, this.currentIncarnation],
    );
    const placed = rows[0];
    if (placed && target === this.selfId) this.gained(instanceId, Number(placed.epoch), false);
    else if (placed) await this.notify();
    else {
      // No live node to give it to right now (or it has a row already): a free row, taken at once by the
      // next node that looks for work (this one, now).
      await db.query('INSERT INTO zw_instance_leases (instance_id) VALUES ($1) ON CONFLICT DO NOTHING', [
        instanceId,
      ]);
      this.kick();
      await this.notify();
    }
  }

  /** The instance was deleted: its lease row goes with it. */
  async forget(instanceId: string): Promise<void> {
    this.held.delete(instanceId);
    await this.options.db.query('DELETE FROM zw_instance_leases WHERE instance_id = $1', [instanceId]);
  }

  // ------------------------------------------------------------------ the tick

  private schedule(): void {
    if (this.stopping) return;
    this.timer = setTimeout(() => {
      void this.tick().finally(() => this.schedule());
    }, this.options.heartbeatMs);
    this.timer.unref();
  }

  /** Runs a tick now (another node released leases or placed an instance here). */
  private kick(): void {
    if (this.stopping) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    void this.tick();
  }

  private tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = (async () => {
      do {
        this.again = false;
        try {
          await this.tickOnce();
          this.lastTickError = undefined;
        } catch (error) {
          this.lastTickError = error instanceof Error ? error.message : String(error);
          this.options.logger.warn({ err: error }, 'cluster tick failed');
        }
      } while (this.again && !this.stopping);
    })().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  private async tickOnce(): Promise<void> {
    if (this.stopping) return;
    await this.renew();
    if (this.stopping) return;
    if (performance.now() - this.reconciledAt >= (this.options.reconcileMs ?? ORPHAN_ROW_AGE_MS))
      await this.placeKnown();
    await this.balance();
  }

  /**
   * Renews this node's lease, which is the lease of every instance it holds: one UPDATE, whatever their
   * number. It succeeds while the node's row is there, also when the renewal comes late (a stall): nobody
   * takes a node's instances without deleting its row first. When the row is gone, another node found
   * the lease expired and freed them, so this node drops them all and registers as a new incarnation.
   */
  private async renew(): Promise<void> {
    const { db, leaseMs } = this.options;
    const sent = performance.now();
    let rows: { assigned: string }[];
    try {
      ({ rows } = await db.query<{ assigned: string }>(
        `UPDATE zw_cluster_nodes SET heartbeat_at = now(), lease_until = now() + $3 * interval '1 millisecond'
          WHERE node_id = $1 AND incarnation = $2
        RETURNING assigned::text AS assigned`,
        [this.selfId, this.currentIncarnation, leaseMs],
      ));
    } catch (error) {
      this.counters.renewFailures += 1;
      // Past the last certain expiry the leases may belong to others already: close the sockets.
      if (performance.now() >= this.validUntil) for (const id of [...this.held.keys()]) this.lose(id);
      throw error;
    }
    const renewed = rows[0];
    if (!renewed) {
      // Another node found this node's lease expired (a stall, or cut off from the database) and freed
      // what it held: some may be another node's now. Drop it all; whatever is still free is taken back
      // below, with new epochs.
      if (this.held.size > 0)
        this.options.logger.warn(
          { instances: this.held.size },
          'this node’s lease expired and another node freed its instances: dropping them and joining again',
        );
      for (const id of [...this.held.keys()]) this.lose(id);
      this.currentIncarnation = newIncarnation();
      await this.register(sent);
    } else {
      // The database set lease_until from its now(), which is after `sent`.
      this.validUntil = sent + leaseMs;
      if (renewed.assigned !== this.assignedSeen) {
        this.assignedSeen = renewed.assigned;
        await this.readHeld(sent);
      }
    }
    // A safety net: no connection stays open here without a lease (e.g. a restore that raced a hand-over).
    for (const id of this.owned?.connected() ?? []) {
      if (!this.held.has(id)) {
        this.options.logger.warn({ instanceId: id }, 'closing a connection this node holds no lease for');
        this.owned?.drop(id);
      }
    }
  }

  /**
   * Joins as the current incarnation (a new node as far as the others can tell: started now). Leases an
   * earlier incarnation of this node id held are freed.
   */
  private async register(sent: number): Promise<void> {
    const { db, leaseMs } = this.options;
    const { rows } = await db.query<{ assigned: string }>(
      `INSERT INTO zw_cluster_nodes (node_id, address, mode, incarnation, lease_until, started_at, heartbeat_at)
       VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond', now(), now())
       ON CONFLICT (node_id) DO UPDATE SET address = EXCLUDED.address, mode = EXCLUDED.mode,
         incarnation = EXCLUDED.incarnation, lease_until = EXCLUDED.lease_until,
         started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at
       RETURNING assigned::text AS assigned`,
      [this.selfId, this.options.address, this.options.mode, this.currentIncarnation, leaseMs],
    );
    this.validUntil = sent + leaseMs;
    this.assignedSeen = rows[0]?.assigned;
    await db.query(
      `UPDATE zw_instance_leases SET freed_from = node_id, node_id = NULL, incarnation = NULL, lease_until = now()
        WHERE node_id = $1 AND incarnation IS DISTINCT FROM $2`,
      [this.selfId, this.currentIncarnation],
    );
  }

  /**
   * Reads this incarnation's lease rows: instances other nodes placed here are adopted, and a lease gone
   * from the table (deleted meanwhile) is dropped.
   */
  private async readHeld(sent: number): Promise<void> {
    const { rows } = await this.options.db.query<{ instance_id: string; epoch: string }>(
      `SELECT instance_id, epoch::text AS epoch FROM zw_instance_leases WHERE node_id = $1 AND incarnation = $2`,
      [this.selfId, this.currentIncarnation],
    );
    const current = new Map(rows.map((r) => [r.instance_id, Number(r.epoch)]));
    for (const [id, held] of [...this.held]) {
      // A lease taken while the read was on its way (placed at create) is not in its answer.
      if (held.acquiredAt < sent && current.get(id) !== held.epoch) this.lose(id);
    }
    for (const [id, epoch] of current) if (!this.held.has(id)) this.gained(id, epoch, true);
  }

  /**
   * Every instance gets a lease row (free when new); rows of deleted instances go, and so do leases whose
   * node row is gone without freeing them. Runs at start and then every `reconcileMs`, not every tick:
   * instances get their row when they are created (place), this only repairs what a crash left.
   */
  private async placeKnown(): Promise<void> {
    if (!this.owned) return;
    const ids = await this.owned.instanceIds();
    const { db } = this.options;
    await db.query(
      `INSERT INTO zw_instance_leases (instance_id) SELECT unnest($1::text[]) ON CONFLICT (instance_id) DO NOTHING`,
      [ids],
    );
    await db.query(
      `DELETE FROM zw_instance_leases l
        WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[]) AS known(id) WHERE known.id = l.instance_id)
          AND l.created_at < now() - $2 * interval '1 millisecond'
          AND l.node_id IS NULL`,
      [ids, ORPHAN_ROW_AGE_MS],
    );
    await db.query(
      `UPDATE zw_instance_leases l SET freed_from = l.node_id, node_id = NULL, incarnation = NULL, lease_until = now()
        WHERE l.node_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM zw_cluster_nodes n WHERE n.node_id = l.node_id AND n.incarnation = l.incarnation)`,
    );
    this.reconciledAt = performance.now();
  }

  /** Live nodes, oldest first; with the number of leases each holds when `counted`. */
  private async liveNodes(counted: boolean): Promise<{ nodeId: string; count: number; mode: string }[]> {
    const { rows } = await this.options.db.query<{ node_id: string; mode: string; count: number }>(
      `SELECT n.node_id, n.mode,
              ${
                counted
                  ? `(SELECT count(*)::int FROM zw_instance_leases l
                       WHERE l.node_id = n.node_id AND l.incarnation = n.incarnation)`
                  : '0'
              } AS count
         FROM zw_cluster_nodes n
        WHERE n.lease_until > now() OR n.node_id = $1
        ORDER BY n.started_at, n.node_id`,
      [this.selfId],
    );
    return rows.map((r) => ({ nodeId: r.node_id, count: r.count, mode: r.mode }));
  }

  private async leastLoaded(): Promise<string | undefined> {
    const nodes = await this.liveNodes(this.options.mode === 'cluster');
    if (this.options.mode === 'single') return nodes[0]?.nodeId;
    let best: { nodeId: string; count: number } | undefined;
    for (const node of nodes) {
      const count = node.nodeId === this.selfId ? this.held.size : node.count;
      if (!best || count < best.count || (count === best.count && node.nodeId === this.selfId))
        best = { nodeId: node.nodeId, count };
    }
    return best?.nodeId;
  }

  /**
   * Frees the instances of every node whose lease expired: deleting the node's row is what decides it (its
   * renewal needs the row), and its leases are freed in the same statement. Returns how many were freed.
   */
  private async reapExpired(): Promise<number> {
    const { rows } = await this.options.db.query<{ freed: number }>(
      `WITH dead AS (
         DELETE FROM zw_cluster_nodes WHERE node_id <> $1 AND lease_until < now()
         RETURNING node_id, incarnation, lease_until
       ), freed AS (
         UPDATE zw_instance_leases l
            SET freed_from = l.node_id, node_id = NULL, incarnation = NULL, lease_until = dead.lease_until
           FROM dead
          WHERE l.node_id = dead.node_id AND l.incarnation = dead.incarnation
         RETURNING 1
       )
       SELECT count(*)::int AS freed FROM freed`,
      [this.selfId],
    );
    return rows[0]?.freed ?? 0;
  }

  private async balance(): Promise<void> {
    const { db, heartbeatMs, movesPerTick } = this.options;
    await this.reapExpired();
    const mine = this.held.size;
    let room: number;
    let eager: boolean;
    if (this.options.mode === 'single') {
      // The oldest live node owns everything; the others follow (a second process started by mistake).
      const nodes = await this.liveNodes(false);
      room = nodes[0]?.nodeId === this.selfId ? Number.MAX_SAFE_INTEGER : 0;
      eager = true;
    } else {
      const nodes = await this.liveNodes(true);
      const { rows } = await db.query<{ total: number }>(
        'SELECT count(*)::int AS total FROM zw_instance_leases',
      );
      const total = rows[0]?.total ?? 0;
      const n = Math.max(1, nodes.length);
      const high = Math.ceil(total / n);
      const low = Math.floor(total / n);
      const least = Math.min(...nodes.map((node) => (node.nodeId === this.selfId ? mine : node.count)));
      // Above the share, or two more than the least-loaded node: give one batch away (paced).
      let excess = mine - high;
      if (excess <= 0 && mine > low && mine - least > 1) excess = 1;
      if (excess > 0) {
        await this.releaseSome(Math.min(excess, movesPerTick));
        return;
      }
      room = high - mine;
      // The least-loaded node takes first; the others take what stays free longer than one heartbeat.
      eager = mine <= least;
    }
    if (room <= 0) return;
    const staleMs = eager ? 0 : Math.round(heartbeatMs * 1.5);
    const { rows: taken } = await db.query<{ instance_id: string; epoch: string; previous: string | null }>(
      `WITH free AS (
         SELECT instance_id, freed_from FROM zw_instance_leases
          WHERE node_id IS NULL AND lease_until < now() - $4 * interval '1 millisecond'
          ORDER BY lease_until, instance_id
          LIMIT $3
          FOR UPDATE SKIP LOCKED
       )
       UPDATE zw_instance_leases l
          SET node_id = $1, incarnation = $2, epoch = l.epoch + 1, lease_until = '-infinity',
              acquired_at = now(), freed_from = NULL
         FROM free
        WHERE l.instance_id = free.instance_id AND l.node_id IS NULL
       RETURNING l.instance_id, l.epoch::text AS epoch, free.freed_from AS previous`,
      [this.selfId, this.currentIncarnation, Math.min(room, 2_147_483_647), staleMs],
    );
    for (const row of taken) {
      if (row.previous !== null && row.previous !== this.selfId) {
        this.counters.takenOver += 1;
        this.options.logger.info(
          { instanceId: row.instance_id, from: row.previous, epoch: Number(row.epoch) },
          'took over an expired instance lease',
        );
      }
      this.gained(row.instance_id, Number(row.epoch), true);
    }
  }

  /**
   * Hands `count` instances over, newest leases first (they have had the least time to settle here),
   * skipping those being paired.
   */
  private async releaseSome(count: number): Promise<void> {
    const ids = [...this.held]
      .filter(([id]) => this.owned?.movable(id) ?? true)
      .sort((a, b) => b[1].acquiredAt - a[1].acquiredAt)
      .slice(0, count)
      .map(([id]) => id);
    await Promise.all(ids.map((id) => this.release(id)));
    await this.notify();
  }

  /** Hand-over: the runtime records the close and closes the socket, then the lease is freed. */
  private async release(instanceId: string): Promise<void> {
    const held = this.held.get(instanceId);
    if (!held) return;
    try {
      await this.owned?.handOver(instanceId);
    } catch (error) {
      this.options.logger.warn({ err: error, instanceId }, 'hand-over: could not record the close');
    }
    this.held.delete(instanceId);
    this.counters.handOvers += 1;
    // Whatever started meanwhile (a restore that raced the hand-over) stops before the lease is free.
    this.owned?.drop(instanceId);
    await this.options.db
      .query(
        `UPDATE zw_instance_leases SET node_id = NULL, incarnation = NULL, lease_until = now(), freed_from = NULL
          WHERE instance_id = $1 AND node_id = $2 AND epoch = $3`,
        [instanceId, this.selfId, held.epoch],
      )
      .catch((error: unknown) =>
        this.options.logger.warn({ err: error, instanceId }, 'hand-over: could not release the lease'),
      );
  }

  private gained(instanceId: string, epoch: number, restore: boolean): void {
    const existing = this.held.get(instanceId);
    if (existing?.epoch === epoch) return;
    this.held.set(instanceId, { epoch, acquiredAt: performance.now() });
    if (restore) this.owned?.adopt(instanceId);
  }

  private lose(instanceId: string): void {
    if (!this.held.delete(instanceId)) return;
    this.counters.lost += 1;
    this.options.logger.warn(
      { instanceId },
      'lost the instance lease to another node: closing its connection',
    );
    this.owned?.drop(instanceId);
  }

  private refused(instanceId: string, epoch: number | undefined): void {
    const held = this.held.get(instanceId);
    if (held && held.epoch === epoch) this.lose(instanceId);
    else this.owned?.drop(instanceId);
  }

  /**
   * The token a write carries. An instance this node does not know it holds is looked up once: a node
   * that placed a new instance here may not have been heard of yet (the next renew would tell).
   */
  private async tokenOf(instanceId: string): Promise<SessionFence> {
    const held = this.held.get(instanceId);
    if (held) return { nodeId: this.selfId, epoch: held.epoch };
    const { rows } = await this.options.db.query<{ epoch: string }>(
      `SELECT l.epoch::text AS epoch FROM zw_instance_leases l
         JOIN zw_cluster_nodes n ON n.node_id = l.node_id AND n.incarnation = l.incarnation
        WHERE l.instance_id = $1 AND l.node_id = $2 AND l.incarnation = $3 AND n.lease_until > now()`,
      [instanceId, this.selfId, this.currentIncarnation],
    );
    const row = rows[0];
    if (!row) return { nodeId: this.selfId, epoch: 0 };
    this.gained(instanceId, Number(row.epoch), false);
    return { nodeId: this.selfId, epoch: Number(row.epoch) };
  }

  private async notify(): Promise<void> {
    await this.options.db
      .query('SELECT pg_notify($1, $2)', [NOTIFY_CHANNEL, this.selfId])
      .catch(() => undefined);
  }
}

/** The instance an `instance-<id>`, `wa-<id>` or `outbox-<id>` stream belongs to (the streams its lease fences). */
export function instanceOfStream(stream: string): string | undefined {
  if (stream.startsWith('instance-')) return stream.slice('instance-'.length);
  if (stream.startsWith('wa-')) return stream.slice('wa-'.length);
  if (stream.startsWith('outbox-')) return stream.slice('outbox-'.length);
  return undefined;
}
