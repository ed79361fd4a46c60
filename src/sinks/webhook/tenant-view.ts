/**
 * What an instance token may learn about its webhook's failures. The receiver's answer body stays with the
 * admin: shown to whoever sets the URL, it turns the gateway into a reader of other hosts' error pages (with
 * a URL pointing at an internal service, a port scanner that reads banners). So do network details: a
 * name's DNS answer ("resolves to 10.0.0.7"), addresses and ports. A tenant gets the status code, or the
 * kind of failure, which is what it needs to fix its receiver.
 */
export function deliveryErrorForTenant(error: string | null | undefined): string | null {
  if (error === null || error === undefined) return null;
  // Dead letters say why before the cause: "refused by the receiver: HTTP 404: ...".
  const prefix = /^(refused by the receiver|older than WEBHOOK_MAX_AGE[^:]*)/.exec(error)?.[1];
  const kind = failureKind(error);
  if (prefix && kind) return `${prefix}: ${kind}`;
  return prefix ?? kind ?? 'the request failed';
}

function failureKind(error: string): string | undefined {
  const http = /HTTP (\d{3})/.exec(error);
  if (http) return `HTTP ${http[1]}`;
  if (/timeout after \d+ ms/.test(error)) return /timeout after \d+ ms/.exec(error)![0];
  if (/private, loopback or link-local/.test(error)) {
    return 'the URL points at a private, loopback or link-local address, which this server does not reach';
  }
  if (/certificate|altnames|self.signed|TLS|SSL|issuer/i.test(error))
    return 'TLS handshake failed (certificate not accepted)';
  if (/ENOTFOUND|EAI_AGAIN/.test(error)) return 'the host name does not resolve';
  if (/ECONNREFUSED/.test(error)) return 'connection refused';
  if (/ECONNRESET|socket|closed|other side/i.test(error)) return 'connection reset';
  if (/unsupported protocol|invalid URL/.test(error)) return error;
  if (/older than WEBHOOK_MAX_AGE/.test(error)) return undefined;
  return 'no answer (connection failed)';
}
