/**
 * Issue 22 item 5: GET /instance/all is paged (it was one answer of every instance: 5.4 MB at 10,000).
 * `limit` (default 500, at most 1000), `after=<createdAt>,<id>` of the previous page's last instance, and a
 * `Link: <…>; rel="next"` header while more follow; the same in the Evolution GO profile, whose body keeps
 * its `{"message": "success", "data": [...]}` shape.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../support/zapwire.ts';

const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.stop().catch(() => undefined);
});

function nextOf(link: unknown): string | undefined {
  return typeof link === 'string' ? /^<([^>]+)>;\s*rel="next"$/.exec(link)?.[1] : undefined;
}

describe('GET /instance/all, paged', () => {
  it('walks every instance once, in creation order, a page at a time', async () => {
    const t = await startTestApp();
    apps.push(t);
    const names = Array.from({ length: 7 }, (_, i) => `paged-${i}`);
    for (const name of names)
      expect((await t.request('POST', '/instance/create', { body: { name } })).status).toBe(201);

    const whole = await t.request<Array<{ name: string }>>('GET', '/instance/all');
    expect(whole.body.map((i) => i.name)).toEqual(names);
    expect(whole.headers['link']).toBeUndefined();

    const seen: string[] = [];
    let url: string | undefined = '/instance/all?limit=3';
    let pages = 0;
    while (url) {
      const page: Awaited<ReturnType<typeof t.request<Array<{ name: string; id: string }>>>> =
        await t.request('GET', url);
      expect(page.status).toBe(200);
      seen.push(...page.body.map((i) => i.name));
      pages += 1;
      url = nextOf(page.headers['link']);
      // An instance deleted between two pages does not lose the place.
      if (pages === 1) {
        const last = page.body.at(-1)!;
        expect((await t.request('DELETE', `/instance/delete/${last.id}`)).status).toBe(200);
      }
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(names);
  });

  it('refuses a limit or a position it cannot use, with a 400 that says why', async () => {
    const t = await startTestApp();
    apps.push(t);
    for (const query of [
      'limit=0',
      'limit=1001',
      'limit=ten',
      'after=somewhere',
      'after=2026-01-01T00:00:00Z,x',
    ]) {
      const refused = await t.request('GET', `/instance/all?${query}`);
      expect(refused.status, query).toBe(400);
      expect(refused.body).toMatchObject({
        error: { code: expect.any(String), message: expect.any(String) },
      });
    }
  });

  it('keeps the Evolution GO shape under API_COMPAT=evolution-go', async () => {
    const t = await startTestApp({ env: { API_COMPAT: 'evolution-go' } });
    apps.push(t);
    for (let i = 0; i < 3; i++)
      await t.request('POST', '/instance/create', {
        body: { name: `evo-${i}`, token: `evo-token-${i}-0123456789` },
      });
    const first = await t.request<{ message: string; data: Array<{ name: string; token: string }> }>(
      'GET',
      '/instance/all?limit=2',
    );
    expect(first.body.message).toBe('success');
    expect(first.body.data.map((i) => i.name)).toEqual(['evo-0', 'evo-1']);
    expect(first.body.data[0]!.token).toBe('evo-token-0-0123456789');
    const next = nextOf(first.headers['link']);
    expect(next).toBeDefined();
    const second = await t.request<{ message: string; data: Array<{ name: string }> }>('GET', next!);
    expect(second.body.data.map((i) => i.name)).toEqual(['evo-2']);
    expect(second.headers['link']).toBeUndefined();
    const refused = await t.request('GET', '/instance/all?limit=5000');
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual({ error: expect.stringMatching(/limit/) });
  });
});
