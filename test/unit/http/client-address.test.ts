import { describe, expect, it } from 'vitest';
import { clientKeyOf, trustedProxies } from '../../../src/http/client-address.ts';
import { defaultMaxConnections } from '../../../src/config.ts';

describe('client keys of per-address limits', () => {
  it('an IPv4 address is itself, also when a dual-stack socket maps it', () => {
    expect(clientKeyOf('192.0.2.7')).toBe('192.0.2.7');
    expect(clientKeyOf('::ffff:192.0.2.7')).toBe('192.0.2.7');
  });

  it('an IPv6 address counts as its /64, however it is written', () => {
    const key = '2001:db8:0:1::/64';
    for (const address of [
      '2001:db8:0:1::1',
      '2001:0db8:0000:0001:ffff:ffff:ffff:ffff',
      '2001:db8:0:1:1:2:3:4',
      '2001:db8:0:1::1.2.3.4',
      'fe80::1%eth0'.replace('fe80::', '2001:db8:0:1::'),
    ])
      expect(clientKeyOf(address), address).toBe(key);
    expect(clientKeyOf('2001:db8:0:2::1')).not.toBe(key);
    expect(clientKeyOf('::1')).toBe('0:0:0:0::/64');
    expect(clientKeyOf(undefined)).toBe('unknown');
  });
});

describe('trusted proxies (TRUST_PROXY)', () => {
  it('addresses, CIDRs and proxy-addr’s names; nothing when unset, everything with true', () => {
    const trusted = trustedProxies('10.1.2.3, 192.168.0.0/16, loopback');
    expect(trusted('10.1.2.3')).toBe(true);
    expect(trusted('::ffff:10.1.2.3')).toBe(true);
    expect(trusted('10.1.2.4')).toBe(false);
    expect(trusted('192.168.40.1')).toBe(true);
    expect(trusted('127.0.0.1')).toBe(true);
    expect(trusted('::1')).toBe(true);
    expect(trusted('203.0.113.9')).toBe(false);
    expect(trustedProxies(undefined)('127.0.0.1')).toBe(false);
    expect(trustedProxies(true)('203.0.113.9')).toBe(true);
    expect(trustedProxies('uniquelocal')('172.20.0.5')).toBe(true);
  });
});

describe('HTTP_MAX_CONNECTIONS default', () => {
  it('half the open-files limit, between 64 and 10,000; 1024 when unknown', () => {
    const limits = (soft: string): string =>
      `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                65536                files\n`;
    expect(defaultMaxConnections(limits('1024'))).toBe(512);
    expect(defaultMaxConnections(limits('600'))).toBe(300);
    expect(defaultMaxConnections(limits('1048576'))).toBe(10_000);
    expect(defaultMaxConnections(limits('unlimited'))).toBe(10_000);
    expect(defaultMaxConnections(limits('50'))).toBe(64);
    expect(defaultMaxConnections('nothing useful')).toBe(1024);
  });
});
