/**
 * Deleting an instance spans several stores: its streams, its name and token reservations, its sealed
 * secrets, its WhatsApp session, its lease and its sinks' rows. A crash between two of those steps used
 * to leave a ghost (the instance gone from every listing, its history and its name still there). Now the
 * delete is a saga that always finishes:
 *
 * 1. `begin` records what the later steps need (zw_pending_deletions, with the token digests, which the
 *    read model forgets at step 2) before anything else happens;
 * 2. `InstanceDeleted` is recorded (the instance is gone for the API from here on);
 * 3. the audit record is appended, before any stream goes: at every step in between, the read model
 *    equals its rebuild from the log (the audit table's row of an instance otherwise lives only in its own
 *    stream, and a crash after deleting that stream lost it from a rebuild);
 * 4. the session, the secrets and the streams go (each only if still this instance's: a reservation taken
 *    by a later create stays), the `instance-` stream last;
 * 5. the lease and the sinks' rows go (onInstanceDeleted), then the record.
 *
 * Every step is idempotent, and `complete` runs them all again from the record: at start and whenever a
 * node adopts an instance whose record is there (src/runtime/instance-runtime.ts), so the node that owns
 * the instance finishes it. Token rotation uses the same record-first idea (zw_retired_tokens): the old
 * tokens' streams are revoked and deleted even if the rotation was cut short.
 */
import {
  AUDIT_STREAM,
  instanceStream,
  nameReservationStream,
  tokenStream,
  whatsappStream,
} from '../domain/events.ts';
import { START, type Checkpoint, type EventLog } from '../store/port.ts';
import type { WhatsAppConnector } from '../whatsapp/port.ts';
import type { ActorHost } from './actor-host.ts';
import type { PendingDeletions } from './pending-deletions.ts';
import type { RuntimeReadModel } from './read-model.ts';
import type { InstanceSecrets } from './secrets.ts';
import type { WhatsAppStreams } from './whatsapp-stream.ts';

export interface DeletionOptions {
  readonly host: ActorHost;
  readonly store: EventLog;
  readonly readModel: RuntimeReadModel;
  readonly pending: PendingDeletions;
  readonly connector: Pick<WhatsAppConnector, 'removeSession'>;
  readonly secrets: Pick<InstanceSecrets, 'remove'>;
  readonly whatsappStreams: Pick<WhatsAppStreams, 'close'>;
  /** The outboxes: a deleted instance's stops, and its stream and index go. */
  readonly outbox?: { forget(instanceId: string): Promise<void> };
  readonly now: () => Date;
  /** After the instance's streams are gone: its lease, its sinks' delivery log and metrics. */
  readonly onInstanceDeleted?: (instanceId: string) => Promise<void>;
}

/** How long a step waits for the read model to pass what it appended. */
const READ_MODEL_WAIT_MS = 30_000;

export class InstanceDeletion {
  /** Deletes running in this process: a second call for the same instance joins the first. */
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly options: DeletionOptions) {}

  /** Step 1: the record. Call before `complete`; the instance must still exist (or its record). */
  async begin(instanceId: string, by: string): Promise<void> {
    const { host, readModel, pending } = this.options;
    if (await pending.get(instanceId)) return;
    const { name, createdAt } = (await host.snapshot(instanceId)).context;
    const tokenHashes = await readModel.tokenHashesOf(instanceId);
    await pending.record({ instanceId, name, createdAt, by, tokenHashes });
  }

  /** Whether a delete of the instance was begun and has not finished. */
  async isPending(instanceId: string): Promise<boolean> {
    return (await this.options.pending.get(instanceId)) !== undefined;
  }

  /** Runs every step that is left (all of them are idempotent); nothing when no delete was begun. */
  complete(instanceId: string): Promise<void> {
    const running = this.running.get(instanceId);
    if (running) return running;
    const run = this.run(instanceId).finally(() => this.running.delete(instanceId));
    this.running.set(instanceId, run);
    return run;
  }

  private async run(id: string): Promise<void> {
    const { host, store, readModel, pending } = this.options;
    const plan = await pending.get(id);
    if (!plan) return;
    if ((await store.streamVersion(instanceStream(id))) > 0) {
      // Nothing when the stream ends in InstanceDeleted already (the machine is done).
      const { recorded } = await host.dispatch(id, { type: 'delete', at: this.at() });
      if (recorded) await readModel.caughtUp(recorded.append.position, READ_MODEL_WAIT_MS);
    }
    if (!plan.audited) {
      // An earlier run may have appended it and stopped before noting so: the read model says.
      await readModel.caughtUp(await store.headPosition(), READ_MODEL_WAIT_MS, ['instances']);
      if (!(await readModel.deletionAudited(id))) {
        const audit = await store.append(
          AUDIT_STREAM,
          [
            {
              type: 'InstanceDeletionAudited',
              data: {
                at: plan.requestedAt.toISOString(),
                instanceId: id,
                name: plan.name,
                createdAt: plan.createdAt,
                by: plan.by,
              },
            },
          ],
          { expectedVersion: 'any' },
        );
        await readModel.caughtUp(audit.position, READ_MODEL_WAIT_MS);
      }
      await pending.markAudited(id);
    }
    const retired = await pending.retiredOf(id);
    await host.inMailbox(id, async () => {
      host.forget(id);
      await this.options.connector.removeSession(id);
      await this.options.secrets.remove(id);
      await this.options.whatsappStreams.close(id);
      await store.deleteStream(whatsappStream(id));
      await this.options.outbox?.forget(id);
      await this.deleteIfHeld(nameReservationStream(plan.name), id);
      for (const hash of new Set([...plan.tokenHashes, ...retired]))
        await this.deleteIfHeld(tokenStream(hash), id);
      // Last: while it exists, a restart finds the instance (and this record) again.
      await store.deleteStream(instanceStream(id));
    });
    await pending.forgetRetired(retired);
    await this.options.onInstanceDeleted?.(id);
    await pending.done(id);
  }

  /**
   * Token rotation, cut short after its record: each retired token is revoked (if it still opens the
   * instance) and its stream deleted, then the record goes. Runs where `complete` runs.
   */
  async finishRetirements(instanceId: string): Promise<void> {
    const { store, readModel, pending } = this.options;
    const retired = await pending.retiredOf(instanceId);
    if (retired.length === 0) return;
    let revokedThrough: Checkpoint | undefined;
    for (const hash of retired) {
      const [last] = await store.readStream(tokenStream(hash), { direction: 'backward', limit: 1 });
      if (last?.type !== 'InstanceTokenAssigned' || last.data['instanceId'] !== instanceId) continue;
      const revoked = await store.append(
        tokenStream(hash),
        [{ type: 'InstanceTokenRevoked', data: { at: this.at(), instanceId, tokenHash: hash } }],
        { expectedVersion: 'any' },
      );
      revokedThrough = revoked.position;
    }
    // The revocations' own positions: the log's head leaves out what committed while an older transaction
    // (any writer's) was still open, and a token stream deleted before the projection read its revocation
    // would leave the token opening the instance.
    await readModel.caughtUp(revokedThrough ?? (await store.headPosition()), READ_MODEL_WAIT_MS, [
      'instances',
    ]);
    for (const hash of retired) await this.deleteIfHeld(tokenStream(hash), instanceId);
    await pending.forgetRetired(retired);
  }

  /**
   * Deletes cut short before deletes kept a record: their instance is gone from the read model but its
   * audit row says it was never deleted, and its stream ends in InstanceDeleted (or is gone). Each gets a
   * record now, with its token digests found in the log (one read of the `token-` streams, only when there
   * is such an instance), so `complete` finishes it like any other. Returns their ids.
   */
  async recordInterrupted(): Promise<string[]> {
    const { store, readModel, pending } = this.options;
    const found: { instanceId: string; name: string; createdAt: string; deletedAt: string | undefined }[] =
      [];
    for (const candidate of await readModel.unfinishedDeletions()) {
      if (await pending.get(candidate.instanceId)) continue;
      const [last] = await store.readStream(instanceStream(candidate.instanceId), {
        direction: 'backward',
        limit: 1,
      });
      if (last && last.type !== 'InstanceDeleted') continue;
      const at = last?.data['at'];
      found.push({ ...candidate, deletedAt: typeof at === 'string' ? at : undefined });
    }
    if (found.length === 0) return [];
    const tokens = await this.tokenHashesInLog(new Set(found.map((f) => f.instanceId)));
    for (const f of found)
      await pending.record({
        instanceId: f.instanceId,
        name: f.name,
        createdAt: f.createdAt,
        by: 'admin',
        tokenHashes: tokens.get(f.instanceId) ?? [],
        ...(f.deletedAt ? { requestedAt: new Date(f.deletedAt) } : {}),
      });
    return found.map((f) => f.instanceId);
  }

  /** The digests of every token ever assigned to these instances whose stream is still in the log. */
  private async tokenHashesInLog(instanceIds: ReadonlySet<string>): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    let after = START;
    for (;;) {
      const page = await this.options.store.readAll({
        after,
        limit: 1_000,
        filter: { streamPrefixes: [tokenStream('')], eventTypes: ['InstanceTokenAssigned'] },
      });
      for (const event of page.events) {
        const { instanceId, tokenHash } = event.data;
        if (typeof instanceId !== 'string' || typeof tokenHash !== 'string' || !instanceIds.has(instanceId))
          continue;
        out.set(instanceId, [...(out.get(instanceId) ?? []), tokenHash]);
      }
      after = page.next;
      if (page.caughtUp || page.events.length === 0) return out;
    }
  }

  /** Deletes a reservation stream unless another instance holds it now (or it is gone). */
  private async deleteIfHeld(stream: string, instanceId: string): Promise<void> {
    const [last] = await this.options.store.readStream(stream, { direction: 'backward', limit: 1 });
    if (last && last.data['instanceId'] === instanceId) await this.options.store.deleteStream(stream);
  }

  private at(): string {
    return this.options.now().toISOString();
  }
}
