/**
 * GET /instance/:id/history: every event with the state after it, ?at= for a moment, paging, and who may
 * read what (an instance token only its own history).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestApp, type TestApp } from '../../support/zapwire.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.stop();
});

interface Entry {
  version: number;
  type: string;
  state: string;
  machineState: string;
  stateIds: string[];
  recordedAt: string;
  data: Record<string, unknown>;
}
interface Page {
  instance: { id: string; name: string };
  total: number;
  next: number | null;
  entries: Entry[];
  current: { state: string; context: Record<string, unknown> };
}

let serial = 0;
async function create(): Promise<{ id: string; name: string; token: string }> {
  const name = `hist-${++serial}`;
  const token = `${name}-token-abcdef`;
  const r = await t.request('POST', '/instance/create', { body: { name, token } });
  expect(r.status).toBe(201);
  return { id: r.body['id'] as string, name, token };
}

async function pairAndOpen(i: { id: string; token: string }): Promise<void> {
  await t.request('POST', '/instance/connect', { apikey: i.token });
  const connection = await eventually(() => t.fake.connection(i.id));
  connection.issueQr();
  await eventually(
    async () => (await t.request('GET', '/instance/status', { apikey: i.token })).body['state'] === 'qr',
  );
  connection.issueQr();
  connection.scan(undefined, { restart: true });
  await eventually(
    async () => (await t.request('GET', '/instance/status', { apikey: i.token })).body['state'] === 'open',
  );
}

describe('history', () => {
  it('lists every event with the machine state after it', async () => {
    const i = await create();
    await pairAndOpen(i);
    const r = await t.request<Page>('GET', `/instance/${i.id}/history`);
    expect(r.status).toBe(200);
    const steps = r.body.entries.map((e) => [e.type, e.machineState]);
    expect(steps).toEqual([
      ['InstanceCreated', 'created'],
      ['ConnectionStarting', 'session.connecting'],
      ['QrCodeIssued', 'session.qr'],
      ['QrCodeIssued', 'session.qr'],
      ['ConnectionClosed', 'session.connecting'],
      ['ConnectionStarting', 'session.connecting'],
      ['InstanceOpened', 'session.open'],
    ]);
    expect(r.body.entries.map((e) => e.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(r.body.entries.at(-1)?.stateIds).toEqual(['instance.session', 'instance.session.open']);
    expect(r.body.current.state).toBe('open');
    expect(r.body.current.context).toMatchObject({ paired: true, jid: '5511999999999@s.whatsapp.net' });
    expect(r.body.total).toBe(7);
    expect(r.body.next).toBeNull();
  });

  it('resolves the instance by name and pages with from and limit', async () => {
    const i = await create();
    await pairAndOpen(i);
    const first = await t.request<Page>('GET', `/instance/${i.name}/history?limit=3`);
    expect(first.body.entries.map((e) => e.version)).toEqual([1, 2, 3]);
    expect(first.body.next).toBe(4);
    const second = await t.request<Page>('GET', `/instance/${i.name}/history?from=4&limit=3`);
    expect(second.body.entries.map((e) => e.version)).toEqual([4, 5, 6]);
    // a later page still carries the state replayed from the start
    expect(second.body.entries[0]?.machineState).toBe('session.qr');
    const last = await t.request<Page>('GET', `/instance/${i.name}/history?from=7&limit=3`);
    expect(last.body.next).toBeNull();
    expect((await t.request('GET', `/instance/${i.name}/history?limit=0`)).status).toBe(400);
  });

  it('a page of a long stream reads a bounded part of it once warm (snapshots), with the same answer', async () => {
    const i = await create();
    await pairAndOpen(i);
    const { store } = t.zapwire;
    const stream = `instance-${i.id}`;
    const before = await store.streamVersion(stream);
    // Events the fold does not know leave the state as it is: a long stream that ends 'open'.
    for (let chunk = 0; chunk < 6; chunk += 1) {
      await store.append(
        stream,
        Array.from({ length: 500 }, (_, k) => ({
          type: 'AuditNoteForTest',
          data: { at: new Date().toISOString(), n: chunk * 500 + k },
        })),
      );
    }
    const total = before + 3000;
    // Count the events each request reads from the store.
    let read = 0;
    const readStream = store.readStream;
    store.readStream = async (name, options) => {
      const events = await readStream(name, options);
      if (name === stream) read += events.length;
      return events;
    };
    try {
      const page = async (query: string) => {
        read = 0;
        const r = await t.request<Page>('GET', `/instance/${i.id}/history${query}`);
        expect(r.status).toBe(200);
        return { body: r.body, read };
      };
      const cold = await page(`?from=${total - 4}&limit=3`);
      expect(cold.body.entries.map((e) => e.version)).toEqual([total - 4, total - 3, total - 2]);
      expect(cold.body.total).toBe(total);
      expect(cold.body.next).toBe(total - 1);
      expect(cold.body.current.state).toBe('open');
      expect(cold.body.entries[0]?.state).toBe('open');
      // Warm: the same page again, and a page in the middle, each read at most two snapshot spans and the page.
      const again = await page(`?from=${total - 4}&limit=3`);
      expect(again.body).toEqual(cold.body);
      expect(again.read).toBeLessThanOrEqual(2 * 100 + 3);
      const middle = await page(`?from=1500&limit=10`);
      expect(middle.body.entries.map((e) => e.version)).toEqual(
        Array.from({ length: 10 }, (_, k) => 1500 + k),
      );
      expect(middle.body.current).toEqual(cold.body.current);
      expect(middle.read).toBeLessThanOrEqual(2 * 100 + 10 + 100);
      // The first page and ?at= answer as before.
      const first = await page('?limit=3');
      expect(first.body.entries.map((e) => e.type)).toEqual([
        'InstanceCreated',
        'ConnectionStarting',
        'QrCodeIssued',
      ]);
      const at = await t.request<{ state: string; version: number }>(
        'GET',
        `/instance/${i.id}/history?at=${encodeURIComponent(new Date().toISOString())}`,
      );
      expect(at.body.state).toBe('open');
      expect(at.body.version).toBe(total);
    } finally {
      store.readStream = readStream;
    }
  });

  it('?at= gives the state and context at that moment', async () => {
    const i = await create();
    await pairAndOpen(i);
    const { body } = await t.request<Page>('GET', `/instance/${i.id}/history`);
    const qr = body.entries.find((e) => e.type === 'QrCodeIssued');
    expect(qr).toBeDefined();
    const atQr = await t.request(
      'GET',
      `/instance/${i.id}/history?at=${encodeURIComponent(qr?.recordedAt ?? '')}`,
    );
    expect(atQr.status).toBe(200);
    // the first QR and anything recorded in the same millisecond
    expect(['qr', 'connecting']).toContain(atQr.body['state']);
    expect(atQr.body['context']).toMatchObject({ paired: false, jid: null });
    const now = await t.request(
      'GET',
      `/instance/${i.id}/history?at=${encodeURIComponent(new Date().toISOString())}`,
    );
    expect(now.body).toMatchObject({ state: 'open', machineState: 'session.open', version: 7 });
    expect(now.body['context']).toMatchObject({ paired: true, pushName: 'Fake Phone' });
    expect(now.body['lastEvent']).toMatchObject({ type: 'InstanceOpened', version: 7 });

    const before = await t.request('GET', `/instance/${i.id}/history?at=2000-01-01T00:00:00Z`);
    expect(before.status).toBe(404);
    expect((before.body['error'] as { code: string }).code).toBe('ZW_ERR_NOT_YET_CREATED');
    expect((await t.request('GET', `/instance/${i.id}/history?at=yesterday`)).status).toBe(400);
  });
});

describe('who may read a history', () => {
  it('an instance token reads its own (by id or name) and gets 403 for any other', async () => {
    const a = await create();
    const b = await create();
    expect((await t.request('GET', `/instance/${a.id}/history`, { apikey: a.token })).status).toBe(200);
    expect((await t.request('GET', `/instance/${a.name}/history`, { apikey: a.token })).status).toBe(200);
    const other = await t.request('GET', `/instance/${b.id}/history`, { apikey: a.token });
    expect(other.status).toBe(403);
    expect((other.body['error'] as { code: string }).code).toBe('ZW_ERR_FORBIDDEN');
    expect(
      (await t.request('GET', `/instance/${b.name}/history?at=2030-01-01T00:00:00Z`, { apikey: a.token }))
        .status,
    ).toBe(403);
    expect((await t.request('GET', '/instance/does-not-exist/history', { apikey: a.token })).status).toBe(
      403,
    );
  });

  it('the admin key reads any; no key is a 401; unknown instances a 404', async () => {
    const a = await create();
    expect((await t.request('GET', `/instance/${a.id}/history`)).status).toBe(200);
    expect((await t.request('GET', `/instance/${a.id}/history`, { apikey: null })).status).toBe(401);
    expect((await t.request('GET', `/instance/${a.id}/history`, { apikey: 'wrong-key-123' })).status).toBe(
      401,
    );
    expect((await t.request('GET', '/instance/nope/history')).status).toBe(404);
  });

  it('a deleted instance has no history left', async () => {
    const a = await create();
    expect((await t.request('DELETE', `/instance/delete/${a.id}`)).status).toBe(200);
    expect((await t.request('GET', `/instance/${a.id}/history`)).status).toBe(404);
  });
});
