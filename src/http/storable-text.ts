/**
 * What a request carries must be something the store and the serializers can take, checked before
 * validation and before any handler (each used to be a 500, found by the route fuzzer):
 * - every string (path parameters, query, body, keys included) is text PostgreSQL can store: no U+0000
 *   (NUL; `text` and `jsonb` refuse it) and no unpaired UTF-16 surrogate (`jsonb` refuses the `\ud800`
 *   escape JSON.stringify writes for it): `/instance/info/%00`, `{"msgRejectCall": "\u0000"}`;
 * - a body nests at most MAX_DEPTH levels: JSON.parse takes 20 000 levels, JSON.stringify (the manager's
 *   forwarder, event payloads) overflows the stack on them.
 * The body is walked without recursion, for the same reason.
 */
import type { FastifyInstance } from 'fastify';
import { Errors } from '../domain/errors.ts';

// NUL, a high surrogate not followed by a low one, or a low surrogate not preceded by a high one (no `u`
// flag: the pattern works on UTF-16 code units).
// eslint-disable-next-line no-control-regex -- NUL is what it looks for
const UNSTORABLE_UNITS = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Far deeper than any body zapwire or Evolution GO defines (3), far below a stack overflow. */
export const MAX_DEPTH = 64;

const TEXT_RULE = 'text may not contain U+0000 (NUL) or an unpaired UTF-16 surrogate (\\ud800-\\udfff)';

/** What is wrong with the first value that cannot be taken ("<where>: <why>"), or undefined. */
export function unstorableValue(value: unknown, root: string): string | undefined {
  const stack: Array<[unknown, string, number]> = [[value, root, 0]];
  while (stack.length > 0) {
    const [current, where, depth] = stack.pop()!;
    if (typeof current === 'string') {
      if (UNSTORABLE_UNITS.test(current)) return `${where}: ${TEXT_RULE}`;
    } else if (current !== null && typeof current === 'object') {
      if (depth >= MAX_DEPTH) return `${root}: nested deeper than ${MAX_DEPTH} levels`;
      if (Array.isArray(current)) {
        current.forEach((item, index) => stack.push([item, `${where}[${index}]`, depth + 1]));
        continue;
      }
      for (const [key, item] of Object.entries(current as Record<string, unknown>)) {
        if (UNSTORABLE_UNITS.test(key)) return `${where} (a key): ${TEXT_RULE}`;
        stack.push([item, `${where}.${key}`, depth + 1]);
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
      const wrong = unstorableValue(value, part);
      if (wrong !== undefined) throw Errors.validation(wrong);
    }
  });
}
