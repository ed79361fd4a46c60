/**
 * Whose token is this, read from the log rather than the read model: the fallback that keeps instance
 * tokens working while the `instances` read model is rebuilt (emptied, then replayed: until the replay
 * reaches a token's event the read model does not know it) or is behind the log.
 *
 * A token is live when the last event of its `token-<digest>` stream assigns it (a rotation revokes it,
 * then deletes the stream) and its instance's stream exists and does not end in InstanceDeleted (a delete
 * removes the token streams only after recording that).
 */
import { instanceStream, tokenStream } from '../domain/events.ts';
import type { EventLog } from '../store/port.ts';

export async function tokenOwnerInLog(
  store: Pick<EventLog, 'readStream'>,
  tokenHash: string,
): Promise<string | undefined> {
  const [last] = await store.readStream(tokenStream(tokenHash), { direction: 'backward', limit: 1 });
  if (last?.type !== 'InstanceTokenAssigned') return undefined;
  const instanceId = (last.data as { instanceId?: unknown }).instanceId;
  if (typeof instanceId !== 'string') return undefined;
  const [latest] = await store.readStream(instanceStream(instanceId), { direction: 'backward', limit: 1 });
  return latest && latest.type !== 'InstanceDeleted' ? instanceId : undefined;
}
