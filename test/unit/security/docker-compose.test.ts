/**
 * No Docker engine runs in CI, so the shipped compose file is checked as data: what it publishes, which
 * networks reach the data services, and that no credential has a default a stranger could guess.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Service {
  image?: string;
  ports?: string[];
  environment?: Record<string, string>;
  command?: string[];
  networks?: string[];
}

const text = readFileSync(join(import.meta.dirname, '../../../docker-compose.yml'), 'utf8');
// merge: the two zapwire nodes share their definition through YAML merge keys (<<), as Compose reads them.
const compose = parse(text, { merge: true }) as {
  services: Record<string, Service>;
  networks: Record<string, { internal?: boolean } | null>;
};
const services = Object.entries(compose.services);
const NODES = ['zapwire-1', 'zapwire-2'];

describe('docker-compose.yml', () => {
  it('publishes one port, the proxy in front of the zapwire nodes, bound to 127.0.0.1 unless the operator says otherwise', () => {
    const publishing = services.filter(([, s]) => (s.ports ?? []).length > 0).map(([name]) => name);
    expect(publishing).toEqual(['proxy']);
    for (const port of compose.services['proxy']!.ports!) {
      expect(port).toMatch(/^\$\{ZAPWIRE_BIND:-127\.0\.0\.1\}:/);
    }
  });

  it('keeps the data services on an internal network that only the zapwire nodes join', () => {
    expect(compose.networks['backend']?.internal).toBe(true);
    expect(compose.services['proxy']!.networks).toEqual(['outside']);
    for (const [name, service] of services) {
      if (NODES.includes(name) || name === 'proxy') continue;
      expect(service.networks, name).toEqual(['backend']);
    }
  });

  it('exposes no insecure KurrentDB HTTP API', () => {
    const env = compose.services['kurrentdb']!.environment!;
    expect(env['KURRENTDB_ENABLE_ATOM_PUB_OVER_HTTP']).not.toBe('true');
    expect(compose.services['rabbitmq']!.image).not.toMatch(/management/);
  });

  it('has no default credentials: every password must come from the environment', () => {
    expect(text).not.toMatch(/guest/i);
    expect(text).not.toMatch(/zapwire:zapwire@/);
    expect(compose.services['postgres']!.environment!['POSTGRES_PASSWORD']).toMatch(
      /^\$\{POSTGRES_PASSWORD:\?/,
    );
    const rabbit = compose.services['rabbitmq']!.environment!;
    expect(rabbit['RABBITMQ_DEFAULT_USER']).toMatch(/^\$\{RABBITMQ_USER:\?/);
    expect(rabbit['RABBITMQ_DEFAULT_PASS']).toMatch(/^\$\{RABBITMQ_PASSWORD:\?/);
    const nats = compose.services['nats']!.command!.join(' ');
    expect(nats).toMatch(/--user \$\{NATS_USER:\?/);
    expect(nats).toMatch(/--pass \$\{NATS_PASSWORD:\?/);
    for (const node of NODES) {
      const zapwire = compose.services[node]!.environment!;
      expect(zapwire['AMQP_URL']).toContain('${RABBITMQ_PASSWORD:?');
      expect(zapwire['NATS_URL']).toContain('${NATS_PASSWORD:?');
    }
    // Every interpolation of a secret is either required (:?) or empty by default (generated under /data).
    for (const match of text.matchAll(/\$\{([A-Z_]*(?:PASSWORD|KEY|USER)[A-Z_]*)(:[-?])([^}]*)\}/g)) {
      const [, name, operator, fallback] = match;
      if (operator === ':-') expect(fallback, `${name} must not have a default`).toBe('');
    }
  });

  it('keeps tenant webhooks off private networks', () => {
    for (const node of NODES)
      expect(compose.services[node]!.environment!['WEBHOOK_ALLOW_PRIVATE_NETWORKS']).toBe('false');
  });
});
