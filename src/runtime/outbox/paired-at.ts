/**
 * When an instance's number was paired: the first `InstanceOpened` after its last `SessionRemoved` (or
 * since it was created), read backwards from the end of the instance's lifecycle stream. The outbox's
 * warm-up ramp counts from there.
 */
import { instanceStream } from '../../domain/events.ts';
import type { EventLog } from '../../store/port.ts';

const PAGE = 200;

export async function pairedAt(
  store: Pick<EventLog, 'readStream'>,
  instanceId: string,
): Promise<number | undefined> {
  let earliestOpen: number | undefined;
  let toVersion: number | undefined;
  for (;;) {
    const page = await store.readStream(instanceStream(instanceId), {
      direction: 'backward',
      limit: PAGE,
      ...(toVersion !== undefined ? { toVersion } : {}),
    });
    for (const event of page) {
      if (event.type === 'SessionRemoved') return earliestOpen;
      if (event.type === 'InstanceOpened') earliestOpen = Date.parse(String(event.data['at']));
    }
    const last = page.at(-1);
    if (page.length < PAGE || !last || last.streamPosition <= 1) return earliestOpen;
    toVersion = last.streamPosition - 1;
  }
}
