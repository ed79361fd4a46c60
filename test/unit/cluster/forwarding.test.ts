/**
 * The signature between nodes: a forwarded request is accepted once, by the node it was addressed to,
 * within the replay window, and only with the exact method, URL, body and principal that were signed.
 */
import { describe, expect, it } from 'vitest';
import {
  FORWARD_HEADER,
  ForwardVerifier,
  forwardHeaders,
  passedHeadersOf,
  type SignedParts,
} from '../../../src/cluster/forwarding.ts';

const SECRET = 'cluster-secret-0123456789abcdef0123456789';
const NOW = 1_800_000_000_000;

function signed(overrides: Partial<SignedParts> = {}): {
  parts: SignedParts;
  headers: Record<string, string>;
} {
  const parts: SignedParts = {
    method: 'POST',
    url: '/send/text',
    body: Buffer.from('{"number":"5511","text":"hi"}'),
    timestamp: NOW,
    nonce: 'nonce-1',
    from: 'node-a',
    to: 'node-b',
    toIncarnation: 'run-1',
    principal: 'instance:i-1',
    ...overrides,
  };
  return {
    parts,
    headers: {
      ...forwardHeaders(SECRET, parts),
    },
  };
}

const verifier = (now = NOW, incarnation = 'run-1'): ForwardVerifier =>
  new ForwardVerifier(SECRET, 'node-b', () => incarnation, { replayWindowMs: 30_000, now: () => now });

describe('ForwardVerifier', () => {
  it('accepts a signed request once and returns the principal it carries', () => {
    const { parts, headers } = signed();
    const v = verifier();
    expect(v.verify(parts.method, parts.url, headers, parts.body)).toEqual({
      nodeId: 'node-a',
      principal: { role: 'instance', instanceId: 'i-1' },
    });
    expect(() => v.verify(parts.method, parts.url, headers, parts.body)).toThrow(/replayed/);
  });

  it('carries the admin principal', () => {
    const { parts, headers } = signed({ principal: 'admin' });
    expect(verifier().verify(parts.method, parts.url, headers, parts.body).principal).toEqual({
      role: 'admin',
    });
  });

  it('refuses, after a restart with the same node id, what the earlier run accepted (issue 22 item 10)', () => {
    const { parts, headers } = signed();
    expect(verifier(NOW, 'run-1').verify(parts.method, parts.url, headers, parts.body).nodeId).toBe('node-a');
    // The same CLUSTER_NODE_ID started again: a new incarnation, and no memory of the nonces seen before.
    const restarted = verifier(NOW + 1_000, 'run-2');
    expect(() => restarted.verify(parts.method, parts.url, headers, parts.body)).toThrow(/earlier run/);
    // A changed incarnation header breaks the signature.
    expect(() =>
      restarted.verify(
        parts.method,
        parts.url,
        { ...headers, [FORWARD_HEADER.toIncarnation]: 'run-2' },
        parts.body,
      ),
    ).toThrow(/bad signature/);
  });

  it('refuses a changed body, URL, method or principal', () => {
    const { parts, headers } = signed();
    expect(() =>
      verifier().verify(parts.method, parts.url, headers, Buffer.from('{"text":"other"}')),
    ).toThrow(/bad signature/);
    expect(() => verifier().verify(parts.method, '/instance/logout', headers, parts.body)).toThrow(
      /bad signature/,
    );
    expect(() => verifier().verify('DELETE', parts.url, headers, parts.body)).toThrow(/bad signature/);
    expect(() =>
      verifier().verify(
        parts.method,
        parts.url,
        { ...headers, [FORWARD_HEADER.principal]: 'admin' },
        parts.body,
      ),
    ).toThrow(/bad signature/);
  });

  it("carries the client's Idempotency-Key and Prefer signed: changed, added or dropped, it is refused", () => {
    const client = { 'idempotency-key': 'order-42', prefer: 'respond-async' };
    const { parts, headers } = signed({ passed: passedHeadersOf(client) });
    expect(verifier().verify(parts.method, parts.url, { ...headers, ...client }, parts.body).nodeId).toBe(
      'node-a',
    );
    for (const tampered of [
      { ...client, 'idempotency-key': 'order-43' },
      { prefer: 'respond-async' },
      { ...client, prefer: 'wait=1' },
    ])
      expect(() =>
        verifier().verify(parts.method, parts.url, { ...headers, ...tampered }, parts.body),
      ).toThrow(/bad signature/);
    // A request signed without them is refused when one is added on the way.
    const plain = signed({ nonce: 'nonce-2' });
    expect(() =>
      verifier().verify(
        plain.parts.method,
        plain.parts.url,
        { ...plain.headers, ...client },
        plain.parts.body,
      ),
    ).toThrow(/bad signature/);
  });

  it('refuses another secret, another target node, and a missing header', () => {
    const { parts, headers } = signed();
    const other = new ForwardVerifier('another-secret-0123456789abcdef0123', 'node-b', () => 'run-1', {
      now: () => NOW,
    });
    expect(() => other.verify(parts.method, parts.url, headers, parts.body)).toThrow(/bad signature/);
    const toC = signed({ to: 'node-c' });
    expect(() => verifier().verify(parts.method, parts.url, toC.headers, parts.body)).toThrow(
      /addressed to node node-c/,
    );
    const { [FORWARD_HEADER.nonce]: _dropped, ...withoutNonce } = headers;
    expect(() => verifier().verify(parts.method, parts.url, withoutNonce, parts.body)).toThrow(/missing/);
  });

  it('refuses timestamps outside the replay window, both ways', () => {
    const { parts, headers } = signed();
    expect(() => verifier(NOW + 30_001).verify(parts.method, parts.url, headers, parts.body)).toThrow(
      /window/,
    );
    expect(() => verifier(NOW - 30_001).verify(parts.method, parts.url, headers, parts.body)).toThrow(
      /window/,
    );
    expect(verifier(NOW + 29_000).verify(parts.method, parts.url, headers, parts.body).nodeId).toBe('node-a');
  });

  it('forgets nonces only after they could no longer pass the window', () => {
    let now = NOW;
    const v = new ForwardVerifier(SECRET, 'node-b', () => 'run-1', {
      replayWindowMs: 30_000,
      now: () => now,
    });
    const first = signed({ nonce: 'n-1' });
    v.verify(first.parts.method, first.parts.url, first.headers, first.parts.body);
    now = NOW + 29_000;
    expect(() => v.verify(first.parts.method, first.parts.url, first.headers, first.parts.body)).toThrow(
      /replayed/,
    );
    now = NOW + 61_000;
    const later = signed({ nonce: 'n-2', timestamp: now });
    v.verify(later.parts.method, later.parts.url, later.headers, later.parts.body);
    // The old one is out of the window now, whatever the nonce memory holds.
    expect(() => v.verify(first.parts.method, first.parts.url, first.headers, first.parts.body)).toThrow(
      /window/,
    );
  });
});
