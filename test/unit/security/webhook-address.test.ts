/**
 * Finding 5 (SSRF), the address policy: which URLs and addresses a tenant's webhook may reach, and the
 * delivery-time check on the address a name resolves to (names and DNS rebinding).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPrivateAddress } from '../../../src/domain/network.ts';
import { checkWebhookUrl } from '../../../src/domain/webhook-url.ts';
import { WebhookSender } from '../../../src/sinks/webhook/sender.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';

describe('isPrivateAddress', () => {
  it.each([
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fd00::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:169.254.169.254',
    '64:ff9b::a00:1',
    '[::1]',
  ])('%s is private', (address) => expect(isPrivateAddress(address)).toBe(true));

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])(
    '%s is public',
    (address) => expect(isPrivateAddress(address)).toBe(false),
  );
});

describe('checkWebhookUrl', () => {
  const strict = { allowPrivateNetworks: false };
  const open = { allowPrivateNetworks: true };

  it.each([
    ['http://exa mple/', /spaces/],
    ['http://example.com/\n', /control/],
    ['http://', /not a valid URL/],
    ['ftp://example.com/', /http or https/],
    ['http://[::1/', /not a valid URL/],
  ])('rejects the malformed %j even when private networks are allowed', (url, problem) => {
    const result = checkWebhookUrl(url, open);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problem).toMatch(problem);
  });

  it.each([
    'http://127.0.0.1:8080/hook',
    'http://2130706433/',
    'http://0x7f.1/',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://169.254.169.254/latest/meta-data/',
    'http://10.0.0.5:5432/',
    'http://localhost:3000/',
    'http://api.localhost/',
  ])('rejects %s unless private networks are allowed', (url) => {
    const result = checkWebhookUrl(url, strict);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problem).toMatch(/WEBHOOK_ALLOW_PRIVATE_NETWORKS=true/);
    expect(checkWebhookUrl(url, open).ok).toBe(true);
  });

  it('accepts public URLs', () => {
    expect(checkWebhookUrl('https://example.com/hooks/whatsapp?x=1', strict).ok).toBe(true);
    expect(checkWebhookUrl('http://8.8.8.8/', strict).ok).toBe(true);
  });
});

describe('WebhookSender with private networks off', () => {
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
  });
  afterAll(async () => {
    await receiver.close();
  });
  const request = (url: string) => ({ url, body: '{}', headers: {}, timeoutMs: 2_000 });

  it('refuses a name that resolves to a private address at connect time, and an IP literal', async () => {
    const sender = new WebhookSender({ allowPrivateNetworks: false });
    const port = new URL(receiver.url()).port;
    const byName = await sender.send(request(`http://localhost:${port}/hook`));
    expect(byName.ok).toBe(false);
    if (!byName.ok)
      expect(byName.error).toMatch(/resolves to (127\.0\.0\.1|::1).*WEBHOOK_ALLOW_PRIVATE_NETWORKS/);
    const byAddress = await sender.send(request(receiver.url()));
    expect(byAddress.ok).toBe(false);
    if (!byAddress.ok) expect(byAddress.error).toMatch(/private, loopback or link-local/);
    expect(receiver.requests).toHaveLength(0);
    sender.close();
  });

  it("still reaches the operator's own receiver (the global webhook's requests), and everything when allowed", async () => {
    const guarded = new WebhookSender({ allowPrivateNetworks: false });
    expect((await guarded.send({ ...request(receiver.url()), trusted: true })).ok).toBe(true);
    // The same URL asked for without the operator's say-so is refused.
    expect((await guarded.send(request(receiver.url()))).ok).toBe(false);
    guarded.close();
    const open = new WebhookSender({ allowPrivateNetworks: true });
    expect((await open.send(request(receiver.url()))).ok).toBe(true);
    open.close();
    expect(receiver.requests).toHaveLength(2);
  });
});
