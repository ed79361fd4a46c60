/**
 * Proxy agents for an instance's WhatsApp socket and media fetches. SOCKS5 goes through
 * socks-proxy-agent with `socks5h` (the proxy resolves host names, so not even DNS leaves directly),
 * HTTP and HTTPS proxies through https-proxy-agent (CONNECT tunnel).
 *
 * Fails closed: anything that prevents building the agent is a ProxyUnavailableError, and the caller
 * reports the connection closed instead of connecting without the proxy.
 */
import type { Agent } from 'node:http';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { SocksProxyAgent } from 'socks-proxy-agent';
import type { ProxyProtocol, ProxyView } from '../../domain/events.ts';

export interface ProxySpec {
  readonly host: string;
  readonly port: number;
  readonly protocol: ProxyProtocol;
  readonly username?: string;
  readonly password?: string;
}

export class ProxyUnavailableError extends Error {
  override readonly name = 'ProxyUnavailableError';
}

export type ProxyAgentKind = 'socks' | 'http-connect';

export interface BuiltProxy {
  readonly kind: ProxyAgentKind;
  readonly agent: Agent;
  /** host:port and protocol, without credentials: safe for logs and close messages. */
  readonly description: string;
}

export function describeProxy(spec: Pick<ProxySpec, 'host' | 'port' | 'protocol'>): string {
  return `${spec.protocol} proxy ${spec.host}:${spec.port}`;
}

/** The proxy URL with credentials percent-encoded (a password may hold `@`, `:` or `/`). */
export function proxyUrl(spec: ProxySpec): string {
  const scheme = spec.protocol === 'socks5' ? 'socks5h' : spec.protocol;
  const host = spec.host.includes(':') && !spec.host.startsWith('[') ? `[${spec.host}]` : spec.host;
  const credentials =
    spec.username !== undefined && spec.username !== ''
      ? `${encodeURIComponent(spec.username)}${spec.password !== undefined ? `:${encodeURIComponent(spec.password)}` : ''}@`
      : '';
  return `${scheme}://${credentials}${host}:${spec.port}`;
}

export function buildProxyAgent(spec: ProxySpec): BuiltProxy {
  const description = describeProxy(spec);
  if (!spec.host || !Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65_535) {
    throw new ProxyUnavailableError(`${description}: invalid host or port`);
  }
  let url: string;
  try {
    url = proxyUrl(spec);
    new URL(url);
  } catch {
    throw new ProxyUnavailableError(`${description}: not a valid proxy address`);
  }
  try {
    switch (spec.protocol) {
      case 'socks5':
        return { kind: 'socks', agent: new SocksProxyAgent(url) as unknown as Agent, description };
      case 'http':
      case 'https':
        return { kind: 'http-connect', agent: new HttpsProxyAgent(url) as unknown as Agent, description };
      default:
        throw new ProxyUnavailableError(`${description}: unsupported protocol`);
    }
  } catch (error) {
    if (error instanceof ProxyUnavailableError) throw error;
    throw new ProxyUnavailableError(
      `${description}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/**
 * The agent for an instance's recorded proxy, with its password from the secret store. A proxy recorded
 * with a password whose secret is missing cannot be used: that is a failure, not a reason to go direct.
 */
export async function resolveProxy(
  view: ProxyView,
  lookupPassword: () => Promise<string | undefined>,
): Promise<BuiltProxy> {
  let password: string | undefined;
  if (view.hasPassword) {
    try {
      password = await lookupPassword();
    } catch (error) {
      throw new ProxyUnavailableError(
        `${describeProxy(view)}: could not read its password (${error instanceof Error ? error.message : String(error)})`,
      );
    }
    if (password === undefined)
      throw new ProxyUnavailableError(`${describeProxy(view)}: its password is missing`);
  }
  return buildProxyAgent({
    host: view.host,
    port: view.port,
    protocol: view.protocol,
    ...(view.username !== undefined ? { username: view.username } : {}),
    ...(password !== undefined ? { password } : {}),
  });
}
