/** A failure of the embedded PostgreSQL, worded as one line a person can act on. */
export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError';
}
