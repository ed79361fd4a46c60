/**
 * Cluster mode: several zapwire nodes on one PostgreSQL, each instance owned by exactly one live node.
 * This port is what the HTTP edge and the runtime need to know about the cluster; membership and leases
 * (src/cluster/membership.ts, src/cluster/leases.ts) implement it, forwarding (src/cluster/forwarding.ts)
 * uses it. A single process is a cluster of one: it owns every instance.
 */

export interface ClusterNode {
  readonly nodeId: string;
  /** Base URL other nodes use to reach this node's HTTP API (CLUSTER_ADVERTISE_URL). */
  readonly address: string;
  readonly startedAt: Date;
  readonly heartbeatAt: Date;
  /** Number of instance leases this node holds now. */
  readonly instances: number;
}

export interface InstanceOwner {
  readonly instanceId: string;
  readonly nodeId: string;
  readonly address: string;
  /** Fencing epoch: grows by one every time the lease changes hands. */
  readonly epoch: number;
  /**
   * The owner's current registration (new at each start of the node, and when its lease expired): a
   * request forwarded to the owner is signed for it, so it cannot be replayed to a later run.
   */
  readonly incarnation: string;
  readonly leaseUntil: Date;
  /** True when this node is the owner. */
  readonly self: boolean;
}

export interface ClusterView {
  /** This node's id (stable for the life of the process). */
  readonly selfId: string;
  /** This node's current registration (see InstanceOwner.incarnation). */
  incarnation(): string;
  /** The live owner of an instance, or undefined when no node holds a live lease on it. */
  ownerOf(instanceId: string): Promise<InstanceOwner | undefined>;
  /**
   * Whether this node holds the instance's lease now, known from memory (no read): a lease held and not
   * past its validity. False says nothing about who else holds it (ask ownerOf).
   */
  holds(instanceId: string): boolean;
  /** Live nodes (heartbeat not expired), this one included. */
  nodes(): Promise<ClusterNode[]>;
}

/** What GET /admin/cluster shows. */
export type ClusterMode = 'cluster' | 'single';

export interface ClusterOverviewInstance {
  readonly instanceId: string;
  readonly epoch: number;
  /** Since the lease last changed hands. */
  readonly leaseAgeMs: number;
  /** Until it expires unless renewed. */
  readonly expiresInMs: number;
}

export interface ClusterOverview {
  readonly selfId: string;
  readonly mode: ClusterMode;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly nodes: readonly {
    readonly nodeId: string;
    readonly address: string;
    readonly self: boolean;
    readonly startedAt: string;
    readonly heartbeatAt: string;
    readonly instances: readonly ClusterOverviewInstance[];
  }[];
  /** Instances no live node holds a lease on (being taken over, or waiting for a node). */
  readonly unowned: readonly string[];
}
