/**
 * Every string a request carries (path parameters, query, body, at any depth) must be text PostgreSQL can
 * store: no U+0000 (NUL; `text` and `jsonb` refuse it) and no unpaired UTF-16 surrogate (`jsonb` refuses
 * the `\ud800` escape JSON.stringify writes for it). Either used to reach the database and come back as a
 * 500 (`/instance/info/%00`, `{"msgRejectCall": "\u0000"}`); now it is a 400 naming the field, before
 * validation and before any handler. The body is walked without recursion: it may be nested 10 000 deep.
 */
import type { FastifyInstance } from 'fastify';
import { Errors } from '../domain/errors.ts';

// NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one (no `u`
// flag: the pattern works on UTF-16 code units).
// eslint-disable-next-line no-control-regex -- NUL is what it looks for
const UNSTORABLE_UNITS = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The path of the first string (or key) that cannot be stored, or undefined. */
export function unstorableText(value: unknown, root: string): string | undefined {
  const stack: Array<[unknown, string]> = [[value, root]];
  while (stack.length > 0) {
    const [current, where] = stack.pop()!;
    if (typeof current === 'string') {
      if (UNSTORABLE_UNITS.test(current)) return where;
    } else if (Array.isArray(current)) {
      current.forEach((item, index) => stack.push([item, `${where}[${index}]`]));
    } else if (current !== null && typeof current === 'object') {
      for (const [key, item] of Object.entries(current as Record<string, unknown>)) {
        if (UNSTORABLE_UNITS.test(key)) return `${where} (a key)`;
        stack.push([item, `${where}.${key}`]);
      }
    }
  }
  return undefined;
}

export function installStorableText(app: FastifyInstance): void {
  app.addHook('preValidation', async (request) => {
    for (const [part, value] of [
      ['path', request.params],
      ['query', request.query],
      ['body', request.body],
    ] as const) {
      const where = unstorableText(value, part);
      if (where !== undefined)
        throw Errors.validation(
          `${where}: text may not contain U+0000 (NUL) or an unpaired UTF-16 surrogate (\\ud800-\\udfff)`,
        );
    }
  });
}
