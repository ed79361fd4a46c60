/**
 * The delivery-time half of the webhook address policy (src/domain/network.ts): a DNS lookup for the
 * socket that fails when the name resolves to a private address. Checking the address the socket is about
 * to connect to, not an earlier resolution, is what defeats DNS rebinding (public at configuration time,
 * 127.0.0.1 at delivery time).
 */
import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import { isPrivateAddress } from '../../domain/network.ts';
import { PRIVATE_NETWORKS_HINT } from '../../domain/webhook-url.ts';

export class BlockedAddressError extends Error {
  override readonly name = 'BlockedAddressError';
  readonly code = 'ZW_WEBHOOK_ADDRESS_BLOCKED';
  constructor(hostname: string, address: string) {
    super(
      `${hostname} resolves to ${address}, a private, loopback or link-local address: ${PRIVATE_NETWORKS_HINT}`,
    );
  }
}

export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) {
      callback(error, '', 0);
      return;
    }
    const list = addresses as dns.LookupAddress[];
    const private_ = list.find((a) => isPrivateAddress(a.address));
    if (private_) {
      callback(new BlockedAddressError(hostname, private_.address), '', 0);
      return;
    }
    if (options.all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
    else callback(null, list[0]!.address, list[0]!.family);
  });
};
