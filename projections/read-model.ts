/**
 * The read model as one object: what the runtime, the sinks, auth and /metrics read. Each lookup the
 * request path depends on keeps working while the `instances` read model is rebuilt (emptied, then
 * replayed) or lags behind the log: it asks the read model first and the log after, so an instance stays
 * reachable by id and its tokens keep opening it.
 */
import { instanceStream, tokenStream, type SinkSettings } from '../src/domain/events.ts';
import type { RuntimeReadModel } from '../src/runtime/read-model.ts';
import type { SinkSettingsSource } from '../src/sinks/directory.ts';
import type { Checkpoint, EventLog } from '../src/store/port.ts';
import type { SqlExecutor } from '../src/store/sql.ts';
import {
  deletionAudited,
  findInstance,
  instanceCountsByState,
  instanceByTokenHash,
  instanceIdByTokenHash,
  lastActivityByInstance,
  listInstanceIds,
  sinkSettingsOf,
  tokenHashesOf,
  unfinishedDeletions,
  type InstanceView,
} from './queries.ts';
import type { ProjectionRunner } from './runner.ts';

/** An instance as the HTTP edge names it, with its read-model row when the read model has it. */
export interface InstanceName {
  readonly id: string;
  readonly name: string;
  readonly view?: InstanceView;
}

export class ReadModel implements RuntimeReadModel, SinkSettingsSource {
  constructor(
    private readonly db: SqlExecutor,
    private readonly log: Pick<EventLog, 'readStream'>,
    private readonly projections: Pick<ProjectionRunner, 'waitFor'>,
  ) {}

  /**
   * The instance an id or name (case-insensitive) refers to. Not in the read model: its stream, by id,
   * unless the stream ends in InstanceDeleted (an instance whose delete is finishing).
   */
  async findInstance(idOrName: string): Promise<InstanceName | undefined> {
    const instance = await findInstance(this.db, idOrName);
    if (instance) return { id: instance.id, name: instance.name, view: instance };
    const [last] = await this.log.readStream(instanceStream(idOrName), { direction: 'backward', limit: 1 });
    return last && last.type !== 'InstanceDeleted' ? { id: idOrName, name: idOrName } : undefined;
  }

  /** The instance's whole row, from the read model only (no fallback: the log has no view to give). */
  instanceView(idOrName: string): Promise<InstanceView | undefined> {
    return findInstance(this.db, idOrName);
  }

  /**
   * The instance a token (by its digest) opens. Not in the read model: the token's own stream, whose last
   * event must assign it (a rotation revokes it, then deletes the stream), to an instance whose stream
   * exists and does not end in InstanceDeleted (a delete removes the token streams only after that).
   */
  async instanceIdByTokenHash(tokenHash: string): Promise<string | undefined> {
    const known = await instanceIdByTokenHash(this.db, tokenHash);
    if (known) return known;
    return this.tokenOwnerInLog(tokenHash);
  }

  /**
   * The instance a token opens with its row, read with the token in one round trip (the request path's
   * lookup). When the read model does not know the token, the log says whose it is (as
   * `instanceIdByTokenHash`), and the instance is then found as `findInstance` finds it: the token rows may
   * be missing while the instance's row is there (a rebuild that has not reached them yet).
   */
  async instanceByTokenHash(tokenHash: string): Promise<InstanceName | undefined> {
    const view = await instanceByTokenHash(this.db, tokenHash);
    if (view) return { id: view.id, name: view.name, view };
    const id = await this.tokenOwnerInLog(tokenHash);
    if (id === undefined) return undefined;
    return (await this.findInstance(id)) ?? { id, name: id };
  }

  private async tokenOwnerInLog(tokenHash: string): Promise<string | undefined> {
    const [last] = await this.log.readStream(tokenStream(tokenHash), { direction: 'backward', limit: 1 });
    if (last?.type !== 'InstanceTokenAssigned') return undefined;
    const instanceId = (last.data as { instanceId?: unknown }).instanceId;
    if (typeof instanceId !== 'string') return undefined;
    const [latest] = await this.log.readStream(instanceStream(instanceId), {
      direction: 'backward',
      limit: 1,
    });
    return latest && latest.type !== 'InstanceDeleted' ? instanceId : undefined;
  }

  /** The instance's sink settings (the sinks' directory: src/sinks/directory.ts). */
  async sinkSettingsOf(
    instanceId: string,
  ): Promise<{ id: string; name: string; sinks: SinkSettings } | undefined> {
    const instance = await findInstance(this.db, instanceId);
    return instance && { id: instance.id, name: instance.name, sinks: sinkSettingsOf(instance) };
  }

  instanceIds(): Promise<string[]> {
    return listInstanceIds(this.db);
  }

  lastActivity(): Promise<ReadonlyMap<string, number>> {
    return lastActivityByInstance(this.db);
  }

  tokenHashesOf(instanceId: string): Promise<string[]> {
    return tokenHashesOf(this.db, instanceId);
  }

  deletionAudited(instanceId: string): Promise<boolean> {
    return deletionAudited(this.db, instanceId);
  }

  unfinishedDeletions(): Promise<{ instanceId: string; name: string; createdAt: string }[]> {
    return unfinishedDeletions(this.db);
  }

  caughtUp(position: Checkpoint, timeoutMs: number, projections?: readonly string[]): Promise<boolean> {
    return this.projections.waitFor(position, timeoutMs, projections);
  }

  /** How many instances are in each API state (the `zapwire_instances` gauge). */
  countsByState(): Promise<Map<string, number>> {
    return instanceCountsByState(this.db);
  }
}
