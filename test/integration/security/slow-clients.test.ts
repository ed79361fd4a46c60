/**
 * Issue #22, items 3 and 15: clients that hold connections (a body sent one byte at a time, with or
 * without a key; more connections than one address may hold) are cut within the configured bounds while
 * other clients keep being answered; and what Node's HTTP parser refuses before Fastify sees a request
 * (431, malformed requests, a request not received in time) is answered in the profile's error shape.
 * Real sockets against the app listening on 127.0.0.1; "another client" connects from 127.0.0.2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';
import { getFrom, rawExchange, slowBody } from '../../support/slow-client.ts';

const REQUEST_TIMEOUT_MS = 2_000;
const PER_ADDRESS = 20;

interface Listening {
  readonly t: TestApp;
  readonly port: number;
}

async function listening(env: Record<string, string>): Promise<Listening> {
  const t = await startTestApp({
    env: {
      HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      HTTP_MAX_CONNECTIONS_PER_ADDRESS: String(PER_ADDRESS),
      ...env,
    },
  });
  const url = await t.zapwire.app.listen({ port: 0, host: '127.0.0.1' });
  return { t, port: Number(new URL(url).port) };
}

describe('slow clients (issue #22, item 3)', () => {
  let server: Listening;
  beforeAll(async () => {
    server = await listening({});
  });
  afterAll(async () => {
    await server?.t.stop();
  });

  it('a refusal answered before the body is read closes the connection at once', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () =>
        slowBody({
          port: server.port,
          path: '/instance/create',
          headers: { apikey: 'wrong-key' },
          giveUpAfterMs: 30_000,
        }),
      ),
    );
    for (const outcome of outcomes) {
      expect(outcome.status).toBe(401);
      // Cut right after the answer, not after the request timeout (before: open for as long as bytes came).
      expect(outcome.closedAfterMs).toBeLessThan(REQUEST_TIMEOUT_MS);
    }
  });

  it('a body that does not arrive within HTTP_REQUEST_TIMEOUT_MS is cut with a 408 in the error shape', async () => {
    // POST /manager/session reads the body of anyone; so does every route once the key is right.
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () =>
        slowBody({ port: server.port, path: '/manager/session', giveUpAfterMs: 30_000 }),
      ),
    );
    for (const outcome of outcomes) {
      expect(outcome.closedAfterMs).toBeDefined();
      // The timeout, plus Node's check interval, plus a busy machine.
      expect(outcome.closedAfterMs!).toBeLessThan(REQUEST_TIMEOUT_MS + 6_000);
      expect(outcome.status).toBe(408);
      expect(JSON.parse(outcome.body)).toEqual({
        error: { code: 'ZW_ERR_REQUEST_TIMEOUT', message: expect.stringMatching(/2 s/) as string },
      });
    }
  });

  it('one address holds at most HTTP_MAX_CONNECTIONS_PER_ADDRESS connections; /health answers everyone else', async () => {
    const attack = Promise.all(
      Array.from({ length: PER_ADDRESS * 3 }, () =>
        slowBody({ port: server.port, path: '/manager/session', giveUpAfterMs: 30_000, byteEveryMs: 100 }),
      ),
    );
    // While the attack holds its connections, another client is answered at once.
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (let i = 0; i < 5; i++) {
      const health = await getFrom('127.0.0.2', server.port, '/health', 2_000);
      expect(health.status).toBe(200);
    }
    const outcomes = await attack;
    // Beyond the cap, a connection is closed as soon as it is accepted; the rest by the request timeout.
    const refused = outcomes.filter((o) => o.closedAfterMs !== undefined && o.closedAfterMs < 1_000);
    expect(refused.length).toBeGreaterThanOrEqual(PER_ADDRESS * 2);
    for (const outcome of outcomes) expect(outcome.closedAfterMs).toBeDefined();
    // And once the server has seen them closed, the attacking address is served again.
    await expect
      .poll(async () => (await getFrom('127.0.0.1', server.port, '/health').catch(() => undefined))?.status, {
        timeout: 5_000,
      })
      .toBe(200);
  });
});

describe('errors of the HTTP parser, in the profile shape (issue #22, item 15)', () => {
  for (const profile of ['default', 'evolution-go'] as const) {
    describe(`${profile} profile`, () => {
      let server: Listening;
      beforeAll(async () => {
        server = await listening(profile === 'evolution-go' ? { API_COMPAT: 'evolution-go' } : {});
      });
      afterAll(async () => {
        await server?.t.stop();
      });
      const shape = (code: string, message: RegExp): unknown =>
        profile === 'default'
          ? { error: { code, message: expect.stringMatching(message) as string } }
          : { error: expect.stringMatching(message) as string };

      it('431 for headers over the limit', async () => {
        const answer = await rawExchange(
          server.port,
          `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        );
        expect(answer.status).toBe(431);
        expect(answer.headers['content-type']).toMatch(/^application\/json/);
        expect(JSON.parse(answer.body)).toEqual(shape('ZW_ERR_HEADERS_TOO_LARGE', /headers too large/));
      });

      it('400 for a request the parser refuses', async () => {
        for (const bytes of [
          'NOT-A-METHOD / HTTP/1.1\r\nHost: x\r\n\r\n',
          'GET /health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n',
          'POST /instance/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
        ]) {
          const answer = await rawExchange(server.port, bytes);
          expect({ bytes, status: answer.status }).toEqual({ bytes, status: 400 });
          expect(JSON.parse(answer.body)).toEqual(shape('ZW_ERR_BAD_REQUEST', /malformed HTTP request/));
        }
      });
    });
  }
});
