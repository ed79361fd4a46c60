/**
 * The two profiles' instance-name rules, side by side, and why they may differ: the default profile keeps
 * names to `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`; the Evolution GO profile takes any non-empty name up to 128
 * characters, as Evolution GO does (its clients send names with spaces, accents and dots). Either way a
 * name becomes one RabbitMQ routing-key word and one NATS subject token, a different one for every name,
 * so no name of either profile can change what a binding matches (docs/evolution-go.md, "Names").
 */
import { describe, expect, it } from 'vitest';
import { createRequest } from '../../../src/http/profiles/evolution-go/requests.ts';
import { INSTANCE_NAME_PATTERN } from '../../../src/http/schemas.ts';
import { amqpRoutingKey, natsSubject, routingToken } from '../../../src/sinks/routing.ts';

const defaultRule = new RegExp(INSTANCE_NAME_PATTERN);
const TOKEN = 'evo-token-0123456789abcdef';

/** Names from Evolution GO's own guide and what its clients are seen to send. */
const EVOLUTION_NAMES = [
  'vendas',
  'atendimento-24h',
  'Loja São Paulo',
  'a.b c!',
  'suporte #1 > fila *',
  'x'.repeat(128),
];

describe('instance names', () => {
  it('the default profile keeps names that are routing-key words as they are', () => {
    for (const name of ['vendas', 'vendas-regiao-sul', 'suporte_nivel_1', 'A'.repeat(64)]) {
      expect(defaultRule.test(name), name).toBe(true);
      expect(routingToken(name)).toBe(name);
    }
    for (const name of ['Loja São Paulo', 'a.b', '-vendas', 'A'.repeat(65), ''])
      expect(defaultRule.test(name), name).toBe(false);
  });

  it('the Evolution GO profile takes any non-empty name up to 128 characters', () => {
    for (const name of EVOLUTION_NAMES) expect(createRequest({ name, token: TOKEN }).name).toBe(name);
    expect(() => createRequest({ name: 'x'.repeat(129), token: TOKEN })).toThrow(/at most 128/);
    expect(() => createRequest({ name: '  ', token: TOKEN })).toThrow(/name is required/);
  });

  it('every such name is one routing-key word and one subject token, distinct per name', () => {
    const words = new Set<string>();
    for (const name of EVOLUTION_NAMES) {
      const key = amqpRoutingKey(name, 'MESSAGE');
      expect(key.split('.'), key).toHaveLength(2);
      expect(key).not.toMatch(/[\s*#>]/);
      const subject = natsSubject('zapwire', name, 'MESSAGE');
      expect(subject.split('.'), subject).toHaveLength(3);
      expect(subject).not.toMatch(/[\s*>]/);
      words.add(routingToken(name));
    }
    expect(words.size).toBe(EVOLUTION_NAMES.length);
  });
});
