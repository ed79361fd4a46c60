import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSqlEventLog } from '../../../src/store/sql-event-store.ts';
import type { AppendResult, EventLog, NewEvent } from '../../../src/store/port.ts';
import { WhatsAppStreams } from '../../../src/runtime/whatsapp-stream.ts';
import { openTestPostgres, type TestPostgres } from '../../support/postgres.ts';

let pg: TestPostgres;
let log: EventLog;

beforeAll(async () => {
  pg = await openTestPostgres();
  log = createSqlEventLog(pg.db);
});
afterAll(async () => {
  await pg.close();
});

/** The real log, counting the append statements it is asked for. */
function counted(): { store: Pick<EventLog, 'append'>; appends: () => number } {
  let n = 0;
  return {
    store: {
      append: (stream, events, options) => {
        n += 1;
        return log.append(stream, events, options);
      },
    },
    appends: () => n,
  };
}

const message = (n: number): NewEvent => ({ type: 'MessageReceived', data: { n } });

describe('WhatsAppStreams', () => {
  it('group-commits what arrives while a statement runs, in arrival order, each caller with its own result', async () => {
    const { store, appends } = counted();
    const streams = new WhatsAppStreams(store);
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, n) =>
        streams.append('grouped', n === 7 ? [message(n), message(1000 + n)] : [message(n)]),
      ),
    );
    // The first went alone; the others waited for it and went together.
    expect(appends()).toBeLessThan(10);
    const stored = await log.readStream('wa-grouped');
    const order = stored.map((e) => (e.data as { n: number }).n);
    expect(order).toEqual([
      ...Array.from({ length: 8 }, (_, n) => n),
      1007,
      ...Array.from({ length: 52 }, (_, n) => n + 8),
    ]);
    // Each caller got its own events and the position of its last one.
    results.forEach((result: AppendResult, n) => {
      expect(result.events.map((e) => (e.data as { n: number }).n)).toEqual(n === 7 ? [7, 1007] : [n]);
      expect(result.position).toBe(result.events[result.events.length - 1]!.position);
      expect(result.nextVersion).toBe(result.events[result.events.length - 1]!.streamPosition);
    });
  });

  it('fails every caller of a statement that fails, and goes on with the next ones', async () => {
    let failOnce = true;
    const streams = new WhatsAppStreams({
      append: (stream, events, options) => {
        if (failOnce) {
          failOnce = false;
          return Promise.reject(new Error('database gone'));
        }
        return log.append(stream, events, options);
      },
    });
    const first = streams.append('failing', [message(1)]);
    const second = streams.append('failing', [message(2)]);
    await expect(first).rejects.toThrow('database gone');
    await expect(second).resolves.toMatchObject({ events: [{ data: { n: 2 } }] });
  });

  it('close waits for the appends in flight and refuses later ones', async () => {
    const streams = new WhatsAppStreams(counted().store);
    const inFlight = [streams.append('closing', [message(1)]), streams.append('closing', [message(2)])];
    await streams.close('closing');
    // Both landed before close resolved.
    expect(await log.readStream('wa-closing')).toHaveLength(2);
    await Promise.all(inFlight);
    await expect(streams.append('closing', [message(3)])).rejects.toMatchObject({
      code: 'ZW_ERR_INSTANCE_DELETED',
    });
  });
});
