import { describe, expect, it } from 'vitest';
import { requestHash } from '../../../src/runtime/outbox/request-hash.ts';

describe('requestHash', () => {
  it('is the same for the same request whatever the order of its fields', () => {
    expect(requestHash({ to: 'a', content: { text: 'x', kind: 'text' } })).toBe(
      requestHash({ content: { kind: 'text', text: 'x' }, to: 'a', sendAt: undefined }),
    );
  });

  it('differs when anything that is sent differs', () => {
    const base = requestHash({ to: 'a', content: { kind: 'text', text: 'x' } });
    expect(requestHash({ to: 'b', content: { kind: 'text', text: 'x' } })).not.toBe(base);
    expect(requestHash({ to: 'a', content: { kind: 'text', text: 'y' } })).not.toBe(base);
    expect(requestHash({ to: 'a', content: { kind: 'text', text: 'x' }, sendAt: '2030-01-01' })).not.toBe(
      base,
    );
  });
});
