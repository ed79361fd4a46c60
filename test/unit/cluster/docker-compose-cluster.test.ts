/**
 * docker-compose.yml runs two zapwire nodes in cluster mode behind one port. No Docker engine runs in
 * CI, so the file is checked as data, as Compose reads it (merge keys resolved): two nodes on one
 * database with the same keys, each advertising its own address, CLUSTER_SECRET required, and the
 * proxy sending requests to both.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Service {
  build?: string;
  image?: string;
  ports?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  networks?: string[];
  configs?: { source: string; target: string }[];
  depends_on?: Record<string, { condition: string }>;
}

const text = readFileSync(join(import.meta.dirname, '../../../docker-compose.yml'), 'utf8');
const compose = parse(text, { merge: true }) as {
  services: Record<string, Service>;
  configs: Record<string, { content: string }>;
};
const nodes = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);
const envOf = (name: string): Record<string, string> => compose.services[name]!.environment!;

/** What Compose makes of `${NAME:-default}` when NAME is unset. */
const withDefaults = (value: string): string => value.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

describe('docker-compose.yml: two replicas behind one port', () => {
  it('runs exactly two zapwire nodes, in cluster mode, with distinct ids and addresses', () => {
    expect(nodes.map(([name]) => name)).toEqual(['zapwire-1', 'zapwire-2']);
    for (const [name] of nodes) {
      expect(envOf(name)['CLUSTER_ENABLED']).toBe('true');
      expect(envOf(name)['CLUSTER_NODE_ID']).toBe(name);
      expect(envOf(name)['CLUSTER_ADVERTISE_URL']).toBe(`http://${name}:8080`);
      expect(compose.services[name]!.ports ?? []).toEqual([]);
    }
  });

  it('gives both nodes the same database, keys and cluster secret, each required from the environment', () => {
    const [a, b] = nodes.map(([name]) => envOf(name)) as [Record<string, string>, Record<string, string>];
    for (const name of [
      'DATABASE_URL',
      'GLOBAL_API_KEY',
      'SESSION_ENCRYPTION_KEY',
      'TOKEN_PEPPER',
      'CLUSTER_SECRET',
    ]) {
      expect(a[name], name).toBeDefined();
      expect(a[name], name).toBe(b[name]);
    }
    expect(a['DATABASE_URL']).toMatch(/@postgres:5432\//);
    expect(a['CLUSTER_SECRET']).toMatch(/^\$\{CLUSTER_SECRET:\?/);
    // A key generated under one node's /data would be unknown to the other: these are required.
    for (const name of ['GLOBAL_API_KEY', 'SESSION_ENCRYPTION_KEY', 'TOKEN_PEPPER'])
      expect(a[name], name).toMatch(new RegExp(`^\\$\\{${name}:\\?`));
  });

  it('keeps each node’s data in its own volume', () => {
    const volumes = nodes.map(([, s]) => s.volumes);
    expect(volumes).toEqual([['zapwire-1-data:/data'], ['zapwire-2-data:/data']]);
  });

  it('publishes only the proxy, on 127.0.0.1 by default, and the proxy sends to both nodes', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const port of service.ports ?? []) {
        expect(name).toBe('proxy');
        expect(withDefaults(port)).toBe('127.0.0.1:8080:8080');
      }
    }
    const proxy = compose.services['proxy']!;
    expect(Object.keys(proxy.depends_on ?? {})).toEqual(['zapwire-1', 'zapwire-2']);
    const config = compose.configs[proxy.configs![0]!.source]!.content;
    expect(config).toMatch(/server zapwire-1:8080/);
    expect(config).toMatch(/server zapwire-2:8080/);
    expect(config).toMatch(/proxy_pass http:\/\/zapwire;/);
    // nginx variables are escaped from Compose's interpolation ($$), or Compose would empty them.
    expect(config).not.toMatch(/(^|[^$])\$(http_upgrade|host|scheme)\b/m);
    expect(config).toMatch(/Upgrade \$\$http_upgrade/);
  });
});
