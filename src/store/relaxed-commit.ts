/**
 * A FROM item that turns off the wait for the WAL flush (fsync) at the commit of the statement's own
 * transaction: `... FROM <table> CROSS JOIN ${RELAXED_COMMIT} ...`. One fsync costs milliseconds (5–6 ms
 * on the machine the e2e bench runs on), and it is paid on the path of every inbound message; without it a
 * commit costs a fraction of that.
 *
 * Only for writes that the event log can restore. PostgreSQL can then lose the last commits (at most about
 * three `wal_writer_delay`s, 600 ms by default) on a crash of the database server or the machine — never on
 * a crash of zapwire, since the commit has reached the server — and it loses them as a suffix of the WAL:
 * everything written before a durable commit is durable too. So a lost checkpoint, outbox row or read-model
 * batch is simply read from the log and written again (duplicates carry the same event id), while the
 * events themselves (es_append) keep the server's durable commit.
 */
export const RELAXED_COMMIT = `(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed_commit`;
