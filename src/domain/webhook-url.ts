/**
 * Webhook URLs as the API accepts them: parsed by the WHATWG URL parser (the one the sender uses), http or
 * https only, nothing the parser would silently repair, and, unless private networks are allowed, no host
 * that is a private address or a local name. Names that resolve to private addresses are caught when the
 * webhook is sent (src/sinks/webhook/address-guard.ts).
 */
import { isIP } from 'node:net';
import { isLocalHostName, isPrivateAddress } from './network.ts';

export const PRIVATE_NETWORKS_HINT =
  'webhooks may only reach public addresses; the operator can allow private networks with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true';

export type WebhookUrlCheck =
  { readonly ok: true; readonly url: URL } | { readonly ok: false; readonly problem: string };

export function checkWebhookUrl(
  raw: string,
  options: { readonly allowPrivateNetworks: boolean },
): WebhookUrlCheck {
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(raw))
    return { ok: false, problem: 'it contains spaces or control characters (percent-encode them)' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, problem: 'it is not a valid URL (expected e.g. https://example.com/hooks/whatsapp)' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, problem: `the scheme must be http or https, not ${url.protocol.replace(/:$/, '')}` };
  if (!url.hostname) return { ok: false, problem: 'it has no host' };
  if (!options.allowPrivateNetworks) {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isLocalHostName(host))
      return { ok: false, problem: `"${host}" is this machine: ${PRIVATE_NETWORKS_HINT}` };
    if (isIP(host) && isPrivateAddress(host))
      return {
        ok: false,
        problem: `${host} is a private, loopback or link-local address: ${PRIVATE_NETWORKS_HINT}`,
      };
  }
  return { ok: true, url };
}
