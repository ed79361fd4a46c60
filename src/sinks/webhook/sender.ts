/**
 * One webhook HTTP POST with a hard timeout, over keep-alive agents. Redirects are not followed (a 3xx is a
 * failed attempt): the signed body goes only where it was configured to go.
 */
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isPrivateAddress } from '../../domain/network.ts';
import { PRIVATE_NETWORKS_HINT } from '../../domain/webhook-url.ts';
import { publicOnlyLookup } from './address-guard.ts';

export interface SendRequest {
  readonly url: string;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Aborts the request (shutdown): the result is `aborted`, and the attempt does not count. */
  readonly signal?: AbortSignal;
}

export type SendResult =
  | { readonly ok: true; readonly statusCode: number; readonly durationMs: number }
  | {
      readonly ok: false;
      /** null when no response arrived (network error, timeout). */
      readonly statusCode: number | null;
      readonly error: string;
      readonly durationMs: number;
      /** Seconds from a Retry-After header (429/503), when given. */
      readonly retryAfterSeconds?: number;
      /** Cut short by `signal` (shutdown): not an answer of the receiver, not an attempt. */
      readonly aborted?: true;
    };

const MAX_ERROR_BODY = 300;

export interface SenderPolicy {
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: when false, only public addresses are reached. Default true. */
  readonly allowPrivateNetworks?: boolean;
  /** URLs the operator configured (WEBHOOK_GLOBAL_URL): reached wherever they point. */
  readonly trustedUrls?: readonly string[];
}

export class WebhookSender {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 256 });
  // Separate pools: a tenant's request must never reuse a socket opened for a trusted private URL.
  private readonly guardedHttpAgent = new http.Agent({
    keepAlive: true,
    maxSockets: 256,
    lookup: publicOnlyLookup,
  });
  private readonly guardedHttpsAgent = new https.Agent({
    keepAlive: true,
    maxSockets: 256,
    lookup: publicOnlyLookup,
  });
  private readonly trusted: ReadonlySet<string>;

  constructor(private readonly policy: SenderPolicy = {}) {
    this.trusted = new Set(policy.trustedUrls ?? []);
  }

  send(request: SendRequest): Promise<SendResult> {
    const started = performance.now();
    const elapsed = (): number => Math.round(performance.now() - started);
    return new Promise<SendResult>((resolve) => {
      let url: URL;
      try {
        url = new URL(request.url);
      } catch {
        resolve({ ok: false, statusCode: null, error: `invalid URL`, durationMs: 0 });
        return;
      }
      const secure = url.protocol === 'https:';
      if (!secure && url.protocol !== 'http:') {
        resolve({
          ok: false,
          statusCode: null,
          error: `unsupported protocol ${url.protocol}`,
          durationMs: 0,
        });
        return;
      }
      const guarded = this.policy.allowPrivateNetworks === false && !this.trusted.has(request.url);
      const literal = url.hostname.replace(/^\[|\]$/g, '');
      if (guarded && isIP(literal) && isPrivateAddress(literal)) {
        resolve({
          ok: false,
          statusCode: null,
          error: `${literal} is a private, loopback or link-local address: ${PRIVATE_NETWORKS_HINT}`,
          durationMs: 0,
        });
        return;
      }
      const aborted = (): SendResult => ({
        ok: false,
        statusCode: null,
        error: 'aborted: shutting down',
        durationMs: elapsed(),
        aborted: true,
      });
      if (request.signal?.aborted) {
        resolve(aborted());
        return;
      }
      const payload = Buffer.from(request.body, 'utf8');
      let settled = false;
      const finish = (result: SendResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      // Shutdown must not wait for a slow receiver: the request is cut and the delivery stays pending.
      const onAbort = (): void => {
        finish(aborted());
        req.destroy();
      };
      const req = (secure ? https : http).request(
        url,
        {
          method: 'POST',
          agent: guarded
            ? secure
              ? this.guardedHttpsAgent
              : this.guardedHttpAgent
            : secure
              ? this.httpsAgent
              : this.httpAgent,
          ...(guarded ? { lookup: publicOnlyLookup } : {}),
          headers: {
            'content-type': 'application/json',
            'content-length': String(payload.length),
            'user-agent': 'zapwire-webhook/1',
            ...request.headers,
          },
        },
        (res) => {
          const statusCode = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            if (size < MAX_ERROR_BODY) chunks.push(chunk);
            size += chunk.length;
          });
          res.on('error', (error) =>
            finish({ ok: false, statusCode, error: error.message, durationMs: elapsed() }),
          );
          res.on('end', () => {
            if (statusCode >= 200 && statusCode < 300) {
              finish({ ok: true, statusCode, durationMs: elapsed() });
              return;
            }
            const text = Buffer.concat(chunks).toString('utf8').slice(0, MAX_ERROR_BODY).trim();
            const retryAfter = Number(res.headers['retry-after']);
            finish({
              ok: false,
              statusCode,
              error: `HTTP ${statusCode}${text ? `: ${text}` : ''}`,
              durationMs: elapsed(),
              ...(Number.isFinite(retryAfter) && retryAfter >= 0 ? { retryAfterSeconds: retryAfter } : {}),
            });
          });
        },
      );
      const timer = setTimeout(() => {
        finish({
          ok: false,
          statusCode: null,
          error: `timeout after ${request.timeoutMs} ms`,
          durationMs: elapsed(),
        });
        req.destroy();
      }, request.timeoutMs);
      req.on('error', (error) =>
        finish({ ok: false, statusCode: null, error: error.message, durationMs: elapsed() }),
      );
      request.signal?.addEventListener('abort', onAbort, { once: true });
      req.end(payload);
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.guardedHttpAgent.destroy();
    this.guardedHttpsAgent.destroy();
  }
}

/** 4xx answers are final except 408 (timeout) and 429 (rate limited); everything else is retried. */
export function isRetryable(statusCode: number | null): boolean {
  if (statusCode === null) return true;
  if (statusCode === 408 || statusCode === 429) return true;
  return !(statusCode >= 400 && statusCode < 500);
}
