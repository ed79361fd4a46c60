/**
 * Client addresses as the edge's limits count them, and which addresses are the operator's proxies.
 *
 * An IPv6 client usually holds a whole /64 (one host gets one from its router), so a limit per IPv6
 * address would be a limit per attempt: IPv6 addresses are counted per /64. An IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`, what a dual-stack socket reports) is the IPv4 address.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** The key a per-client limit counts under. */
export function clientKeyOf(address: string | undefined): string {
  if (!address) return 'unknown';
  const plain = withoutIPv4Mapping(address);
  if (!isIPv6(plain)) return plain;
  const prefix = ipv6Groups(plain)
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':');
  return `${prefix}::/64`;
}

function withoutIPv4Mapping(address: string): string {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
}

/** The eight 16-bit groups of a valid IPv6 address (zone dropped, an IPv4 tail as two groups). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%')[0]!.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((group) => parseInt(group, 16));
}

/** Names proxy-addr (and so Fastify's trustProxy) accepts for address ranges. */
const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
};

/**
 * Whether a socket's peer is one of the proxies TRUST_PROXY names (`true`: every peer is): their
 * connections carry many clients, so per-address limits do not apply to them.
 */
export function trustedProxies(trustProxy: boolean | string | undefined): (address: string) => boolean {
  if (trustProxy === true) return () => true;
  if (!trustProxy) return () => false;
  const list = new BlockList();
  for (const entry of trustProxy.split(',').map((e) => e.trim().toLowerCase())) {
    for (const range of NAMED_RANGES[entry] ?? [entry]) {
      const [address = '', prefix] = range.split('/');
      const type = isIPv6(address) ? 'ipv6' : isIPv4(address) ? 'ipv4' : undefined;
      if (!type) continue;
      if (prefix === undefined) list.addAddress(address, type);
      else list.addSubnet(address, Number(prefix), type);
    }
  }
  return (address) => {
    const plain = withoutIPv4Mapping(address);
    const type = isIPv6(plain) ? 'ipv6' : isIPv4(plain) ? 'ipv4' : undefined;
    return type !== undefined && list.check(plain, type);
  };
}
