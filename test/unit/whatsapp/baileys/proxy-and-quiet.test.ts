import { describe, expect, it, vi } from 'vitest';
import {
  buildProxyAgent,
  proxyUrl,
  ProxyUnavailableError,
  resolveProxy,
} from '../../../../src/whatsapp/baileys/proxy.ts';
import pino from 'pino';
import {
  baileysLogger,
  isLibsignalConsoleCall,
  silenceLibsignalConsole,
} from '../../../../src/whatsapp/baileys/quiet.ts';

describe('proxy agent selection', () => {
  it('uses socks-proxy-agent with remote DNS for socks5', () => {
    const built = buildProxyAgent({
      host: '127.0.0.1',
      port: 1080,
      protocol: 'socks5',
      username: 'u',
      password: 'p',
    });
    expect(built.kind).toBe('socks');
    expect(built.agent.constructor.name).toBe('SocksProxyAgent');
    expect(built.description).toBe('socks5 proxy 127.0.0.1:1080');
    expect((built.agent as unknown as { shouldLookup: boolean }).shouldLookup).toBe(false);
  });

  it('uses a CONNECT tunnel (https-proxy-agent) for http and https proxies', () => {
    expect(
      buildProxyAgent({ host: 'proxy.local', port: 3128, protocol: 'http' }).agent.constructor.name,
    ).toBe('HttpsProxyAgent');
    expect(buildProxyAgent({ host: 'proxy.local', port: 443, protocol: 'https' }).kind).toBe('http-connect');
  });

  it('percent-encodes credentials and keeps them out of the description', () => {
    const spec = {
      host: '::1',
      port: 1080,
      protocol: 'socks5' as const,
      username: 'a@b',
      password: 'p:/@ss',
    };
    expect(proxyUrl(spec)).toBe('socks5h://a%40b:p%3A%2F%40ss@[::1]:1080');
    expect(buildProxyAgent(spec).description).not.toContain('ss');
  });

  it('refuses what it cannot build', () => {
    expect(() => buildProxyAgent({ host: '', port: 1080, protocol: 'socks5' })).toThrow(
      ProxyUnavailableError,
    );
    expect(() => buildProxyAgent({ host: 'h', port: 70_000, protocol: 'http' })).toThrow(
      ProxyUnavailableError,
    );
    expect(() => buildProxyAgent({ host: 'h', port: 1, protocol: 'ftp' as never })).toThrow(
      ProxyUnavailableError,
    );
  });

  it('fails closed when a recorded password cannot be found or read', async () => {
    const view = {
      host: '127.0.0.1',
      port: 1080,
      protocol: 'socks5' as const,
      username: 'u',
      hasPassword: true,
    };
    await expect(resolveProxy(view, async () => undefined)).rejects.toThrow(/password is missing/);
    await expect(
      resolveProxy(view, async () => {
        throw new Error('db down');
      }),
    ).rejects.toThrow(ProxyUnavailableError);
    const lookup = vi.fn(async () => 'pw');
    await expect(resolveProxy({ ...view, hasPassword: false }, lookup)).resolves.toMatchObject({
      kind: 'socks',
    });
    expect(lookup).not.toHaveBeenCalled();
  });
});

describe('libsignal console filter', () => {
  it('recognises libsignal’s messages and its session objects, nothing else', () => {
    expect(isLibsignalConsoleCall(['Closing session:', {}])).toBe(true);
    expect(isLibsignalConsoleCall(['Session error:Error: Bad MAC', 'stack'])).toBe(true);
    expect(isLibsignalConsoleCall(['anything', { currentRatchet: {}, indexInfo: {} }])).toBe(true);
    expect(isLibsignalConsoleCall(['server listening on 8080'])).toBe(false);
    expect(isLibsignalConsoleCall([{ msg: 'hello' }])).toBe(false);
  });

  it('drops libsignal’s session dumps (with their private keys) and passes everything else', async () => {
    const seen: unknown[][] = [];
    const capture = (...args: unknown[]) => {
      seen.push(args);
    };
    console.info = capture;
    console.warn = capture;
    console.log = capture;
    const state = silenceLibsignalConsole();
    expect(silenceLibsignalConsole()).toBe(state); // once per process

    const { SessionRecord } = (await import('libsignal')) as unknown as {
      SessionRecord: new () => {
        setSession(s: unknown): void;
        closeSession(s: unknown): void;
        openSession(s: unknown): void;
      };
    };
    const privateKey = Buffer.from('PRIVATE-RATCHET-KEY-CANARY');
    const session = {
      currentRatchet: { ephemeralKeyPair: { privKey: privateKey } },
      indexInfo: { baseKey: Buffer.from('base'), closed: -1 },
      _chains: {},
    };
    const record = new SessionRecord();
    record.setSession(session);
    record.closeSession(session);
    record.closeSession(session);
    record.openSession(session);
    console.info('zapwire says hi');

    expect(seen).toEqual([['zapwire says hi']]);
    expect(state.dropped).toBe(3);
  });
});

describe('Baileys logger', () => {
  it('is never more verbose than warn, nor than the app', () => {
    expect(baileysLogger(pino({ level: 'debug' }), 'i').level).toBe('warn');
    expect(baileysLogger(pino({ level: 'info' }), 'i', 'error').level).toBe('error');
    expect(baileysLogger(pino({ level: 'error' }), 'i').level).toBe('error');
    expect(baileysLogger(pino({ level: 'silent' }), 'i').level).toBe('silent');
    expect(baileysLogger(pino({ level: 'info' }), 'i', 'silent').level).toBe('silent');
  });
});
