/**
 * Which errors mean "the database cannot serve now" (answered 503 with Retry-After at the edge) and which
 * are failures of the request itself. The errors below are the shapes node-postgres and Node give; the
 * running cases (a refused socket, a server starting up, a connection cut by a dying server) are also met for
 * real in test/integration/startup/database-outage.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../../src/store/errors.ts';
import { errorReplyOf } from '../../../src/http/errors.ts';
import type { FastifyError } from 'fastify';

function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

function connectError(code: string): Error {
  return Object.assign(new Error(`connect ${code} /tmp/.s.PGSQL.5432`), { code, syscall: 'connect' });
}

describe('isDatabaseUnavailable', () => {
  it.each([
    ['a full disk', pgError('53100', 'could not extend file "base/5/16384": No space left on device')],
    ['a server shutting down', pgError('57P01', 'terminating connection due to administrator command')],
    [
      'a server in crash recovery',
      pgError('57P02', 'terminating connection due to crash of another server process'),
    ],
    ['a server starting up', pgError('57P03', 'the database system is starting up')],
    ['a broken connection', pgError('08006', 'connection failure')],
    ['a refused socket', connectError('ECONNREFUSED')],
    ['a missing socket', connectError('ENOENT')],
    ['a connection cut under a query', new Error('Connection terminated unexpectedly')],
    ['a pool that could not connect in time', new Error('timeout exceeded when trying to connect')],
    ['one of these as the cause', new Error('append failed', { cause: connectError('ECONNREFUSED') })],
  ])('says yes to %s', (_what, error) => {
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it.each([
    ['a unique violation', pgError('23505', 'duplicate key value violates unique constraint')],
    ['a syntax error', pgError('42601', 'syntax error at or near "SELEC"')],
    [
      'a missing file that is not a socket',
      (() => {
        try {
          readFileSync('/nonexistent/zapwire');
        } catch (error) {
          return error as Error;
        }
        throw new Error('unreachable');
      })(),
    ],
    ['a plain error', new Error('something else')],
    ['not an error', 'Connection terminated'],
  ])('says no to %s', (_what, error) => {
    expect(isDatabaseUnavailable(error)).toBe(false);
  });

  it('is answered 503 with Retry-After in the error shape, not 500', () => {
    const reply = errorReplyOf(connectError('ECONNREFUSED') as FastifyError);
    expect(reply).toMatchObject({
      statusCode: 503,
      retryAfter: 5,
      unexpected: false,
      body: { error: { code: 'ZW_ERR_UNAVAILABLE' } },
    });
    expect(errorReplyOf(pgError('23505', 'duplicate') as FastifyError).statusCode).toBe(500);
  });
});
