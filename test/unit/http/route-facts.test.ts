/**
 * A route declares its facts in its own `config`, and one that lacks a fact it needs does not register:
 * the app fails at start-up naming the route and the fact (src/http/route-facts.ts).
 */
import { describe, expect, it } from 'vitest';
import { checkRouteFacts } from '../../../src/http/route-facts.ts';
import type { FastifyContextConfig } from 'fastify';

const route = (method: string | string[], url: string, config?: FastifyContextConfig) => () =>
  checkRouteFacts({ method, url, ...(config ? { config } : {}) });

describe('route facts', () => {
  it('every route declares its access (the OpenAPI pages excepted)', () => {
    expect(route('GET', '/instance/all')).toThrow(/route GET \/instance\/all declares no config.access/);
    expect(route('GET', '/docs/json')).not.toThrow();
  });

  it('every route that is not a read says where it runs', () => {
    expect(route('POST', '/instance/x', { access: 'caller' })).toThrow(
      /route POST \/instance\/x declares no config.runsOn/,
    );
    expect(route(['GET', 'PUT'], '/instance/x', { access: 'caller' })).toThrow(/GET,PUT .* config.runsOn/);
    expect(route('DELETE', '/instance/x', { access: 'admin', runsOn: 'any' })).not.toThrow();
    for (const method of ['GET', 'HEAD', 'OPTIONS'])
      expect(route(method, '/instance/x', { access: 'caller' })).not.toThrow();
  });

  it('a route on the owner node, or for an instance token only, says where its request names the instance', () => {
    expect(route('POST', '/instance/x', { access: 'caller', runsOn: 'owner' })).toThrow(
      /runs on the instance's owner node but declares no config.instanceFrom/,
    );
    expect(route('GET', '/instance/x', { access: 'instance' })).toThrow(
      /declare config.instanceFrom \['token'\]/,
    );
    expect(
      route('POST', '/instance/x', {
        access: 'caller',
        runsOn: 'owner',
        instanceFrom: ['body.instanceName'],
      }),
    ).not.toThrow();
    expect(route('GET', '/instance/x', { access: 'instance', instanceFrom: ['token'] })).not.toThrow();
  });

  it('names only places the resolution reads, and an optional instance only with a place', () => {
    const unknown = ['headers.instance'] as unknown as FastifyContextConfig['instanceFrom'];
    expect(route('GET', '/instance/x', { access: 'caller', instanceFrom: unknown })).toThrow(
      /unknown place "headers.instance"/,
    );
    expect(route('GET', '/ws', { access: 'caller', instanceOptional: true })).toThrow(
      /instanceOptional without config.instanceFrom/,
    );
  });
});
