/**
 * What the runtime needs from the read model, as a port (projections/read-model.ts implements it):
 * commands answer from the write side, so only boot, the delete saga and read-your-writes look here.
 */
import type { Checkpoint } from '../store/port.ts';

export interface RuntimeReadModel {
  /** Every instance the read model holds (boot restores each). */
  instanceIds(): Promise<string[]>;
  /**
   * When each instance was last active, in ms since the epoch (its WhatsApp traffic, else its creation;
   * never-paired instances may be left out): the restore plan starts with the most recent.
   */
  lastActivity(): Promise<ReadonlyMap<string, number>>;
  /** The hashes of the tokens that open this instance (their reservation streams go with it). */
  tokenHashesOf(instanceId: string): Promise<string[]>;
  /** Whether the audit read model has the instance's deletion record. */
  deletionAudited(instanceId: string): Promise<boolean>;
  /**
   * Instances whose `InstanceDeleted` removed them from the read model while their audit row never got
   * its deletion record: deletes that stopped half-way.
   */
  unfinishedDeletions(): Promise<{ instanceId: string; name: string; createdAt: string }[]>;
  /**
   * Resolves once the named projections (every one when omitted) have passed `position`, so a read right
   * after sees the write; false on timeout.
   */
  caughtUp(position: Checkpoint, timeoutMs: number, projections?: readonly string[]): Promise<boolean>;
}
