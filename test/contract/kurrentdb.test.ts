/**
 * The contract suite against a real KurrentDB/EventStoreDB server, when EVENTSTORE_URL is set
 * (e.g. kurrentdb://127.0.0.1:2113?tls=false). Without it the suite is reported as skipped.
 * The read model (checkpoints, leases, dead letters) lives in an in-memory PGlite.
 */
import { eventStoreContract } from './event-store.contract.ts';
import { openTestPostgres } from '../support/postgres.ts';
import { openKurrentEventStore } from '../../src/store/kurrentdb.ts';

const url = process.env.EVENTSTORE_URL;

eventStoreContract({
  name: 'kurrentdb',
  skip: !url,
  checkpointPattern: /^\d{20}:\d{20}$/,
  uniqueEventIds: false,
  propertyRuns: 10,
  async open() {
    const readModelDb = await openTestPostgres();
    const store = await openKurrentEventStore({ url: url!, db: readModelDb.db });
    return {
      store,
      // A server cannot be emptied: the suite uses fresh stream names per test, so only our own tables
      // are reset. Events of earlier tests stay in $all; the tests filter or read from known positions.
      reset: () => readModelDb.truncate(),
      async close() {
        await store.close();
        await readModelDb.close();
      },
    };
  },
});
