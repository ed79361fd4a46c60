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
const compose = parse(text) as {
  services: Record<string, Service>;
  networks: Record<string, { internal?: boolean } | null>;
};
const services = Object.entries(compose.services);

describe('docker-compose.yml', () => {
  it('publishes a port for zapwire only, bound to 127.0.0.1 unless the operator says otherwise', () => {
    const publishing = services.filter(([, s]) => (s.ports ?? []).length > 0).map(([name]) => name);
    expect(publishing).toEqual(['zapwire']);
    for (const port of compose.services['zapwire']!.ports!) {
      expect(port).toMatch(/^\$\{ZAPWIRE_BIND:-127\.0\.0\.1\}:/);
    }
  });

  it('keeps the data services on an internal network that only zapwire joins', () => {
    expect(compose.networks['backend']?.internal).toBe(true);
    for (const [name, service] of services) {
      if (name === 'zapwire') continue;
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
    const zapwire = compose.services['zapwire']!.environment!;
    expect(zapwire['AMQP_URL']).toContain('${RABBITMQ_PASSWORD:?');
    expect(zapwire['NATS_URL']).toContain('${NATS_PASSWORD:?');
    // Every interpolation of a secret is either required (:?) or empty by default (generated under /data).
    for (const match of text.matchAll(/\$\{([A-Z_]*(?:PASSWORD|KEY|USER)[A-Z_]*)(:[-?])([^}]*)\}/g)) {
      const [, name, operator, fallback] = match;
      if (operator === ':-') expect(fallback, `${name} must not have a default`).toBe('');
    }
  });

  it('keeps tenant webhooks off private networks', () => {
    expect(compose.services['zapwire']!.environment!['WEBHOOK_ALLOW_PRIVATE_NETWORKS']).toBe('false');
  });
});
