/**
 * Issue 22 item 9: instance names map to RabbitMQ routing-key words and NATS subject tokens one to one.
 * Before, `acme.corp` and `acme_corp` (and `são` and `s_o`) shared one word, so a queue bound to
 * `acme_corp.#` received both tenants' events.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { amqpRoutingKey, natsSubject, routingToken } from '../../../src/sinks/routing.ts';

describe('routingToken', () => {
  it('gives names that used to collide different words', () => {
    expect(routingToken('acme.corp')).not.toBe(routingToken('acme_corp'));
    expect(routingToken('são')).not.toBe(routingToken('s_o'));
    expect(routingToken('a b')).not.toBe(routingToken('a_b'));
    expect(routingToken('a%2Eb')).not.toBe(routingToken('a.b'));
    expect(amqpRoutingKey('acme.corp', 'MESSAGE')).toBe('acme%2Ecorp.MESSAGE');
    expect(natsSubject('zapwire', 'são', 'MESSAGE')).toBe('zapwire.s%C3%A3o.MESSAGE');
  });

  it("keeps every name zapwire's own API accepts as it is", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/), (name) => {
        expect(routingToken(name)).toBe(name);
      }),
    );
  });

  it('is injective and yields one word without wildcard, separator or space characters', () => {
    const names = fc.oneof(
      fc.string({ maxLength: 128 }),
      fc.string({ unit: 'grapheme', maxLength: 128 }),
      fc.string({ unit: fc.constantFrom('.', '_', '%', '~', 'a', 'ã', '*', '#', '>', ' '), maxLength: 40 }),
    );
    fc.assert(
      fc.property(names, names, (a, b) => {
        const [ta, tb] = [routingToken(a), routingToken(b)];
        if (a !== b) expect(ta).not.toBe(tb);
        for (const token of [ta, tb]) {
          expect(token).toMatch(/^[A-Za-z0-9_%~-]+$/);
          expect(Buffer.byteLength(token)).toBeLessThanOrEqual(200);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('shortens long names with a digest, keeping them apart', () => {
    const long = 'ã'.repeat(128);
    const other = `${'ã'.repeat(127)}b`;
    expect(routingToken(long)).toMatch(/~[0-9a-f]{32}$/);
    expect(routingToken(long)).not.toBe(routingToken(other));
    expect(routingToken(long).length).toBeLessThanOrEqual(200);
  });
});
