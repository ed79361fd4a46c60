/**
 * Against the real NATS (JetStream enabled) on 127.0.0.1:4222 (fails, never skips, when it is down).
 * Connection drops go through a TCP relay that resets the sink's connection mid-stream.
 */
import { randomUUID } from 'node:crypto';
import { DiscardPolicy, connect, type JetStreamManager, type Msg, type NatsConnection } from 'nats';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigTimeline } from '../../../src/sinks/config-timeline.ts';
import { SinkMetrics } from '../../../src/sinks/metrics.ts';
import { NatsSink } from '../../../src/sinks/nats.ts';
import {
  assertEnvelope,
  capturingLogger,
  createInstance,
  eventually,
  messages,
  mixedEvents,
  sinks as settings,
} from './support/fixtures.ts';
import { MemoryEventStore } from './support/memory-store.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const NATS_PORT = Number(process.env['NATS_PORT'] ?? 4222);
const NATS_URL = `nats://127.0.0.1:${NATS_PORT}`;

interface Got {
  subject: string;
  id: string;
  msgId: string | undefined;
  body: string;
}

describe('NATS sink', () => {
  let store: MemoryEventStore;
  let observer: NatsConnection;
  let jsm: JetStreamManager;
  let prefix: string;
  let received: Got[];
  let sink: NatsSink | undefined;
  let proxy: TcpProxy | undefined;
  const streams: string[] = [];

  const startSink = (url = NATS_URL): { logs: () => string[] } => {
    const { logger, messages: logs } = capturingLogger();
    sink = new NatsSink({
      url,
      prefix,
      store,
      timeline: new ConfigTimeline(store, undefined, logger),
      metrics: new SinkMetrics(),
      logger,
      publishTimeoutMs: 2_000,
      reconnect: { baseMs: 100, maxMs: 500 },
      retry: { baseMs: 50, maxMs: 200 },
      subscription: { pollIntervalMs: 50, retryDelayMs: 100 },
    });
    sink.start();
    return { logs };
  };

  const record = (m: Msg): void => {
    const body = new TextDecoder().decode(m.data);
    received.push({
      subject: m.subject,
      id: (JSON.parse(body) as { id: string }).id,
      msgId: m.headers?.get('Nats-Msg-Id'),
      body,
    });
  };

  beforeEach(async () => {
    store = new MemoryEventStore();
    prefix = `zt${randomUUID().slice(0, 8)}`;
    received = [];
    observer = await connect({ servers: NATS_URL });
    jsm = await observer.jetstreamManager();
  });

  afterEach(async () => {
    await sink?.stop();
    sink = undefined;
    await proxy?.close();
    proxy = undefined;
    for (const name of streams.splice(0)) await jsm.streams.delete(name).catch(() => undefined);
    await observer.close();
  });

  it('core-publishes exactly the subscribed events on <prefix>.<instance>.<EVENT>', async () => {
    const sub = observer.subscribe(`${prefix}.>`, { callback: (_e, m) => record(m) });
    await observer.flush();
    startSink();
    await createInstance(
      store,
      'n1',
      'natty',
      settings({ natsEnable: true, events: ['CALL', 'CONNECTION_UPDATE'] }),
    );
    await createInstance(store, 'n2', 'quiet', settings({ natsEnable: false, events: ['ALL'] }));
    await mixedEvents(store, 'n1');
    await mixedEvents(store, 'n2');
    await eventually(() => received.length >= 2, 10_000, '2 messages');
    await new Promise((r) => setTimeout(r, 200));
    sub.unsubscribe();
    expect(received.map((g) => g.subject)).toEqual([
      `${prefix}.natty.CALL`,
      `${prefix}.natty.CONNECTION_UPDATE`,
    ]);
    for (const g of received) {
      assertEnvelope(JSON.parse(g.body));
      expect(g.msgId).toBe(g.id);
    }
  });

  it('publishes through JetStream with msgID = event id where a stream covers the subject', async () => {
    const stream = `ZT_${prefix}`;
    streams.push(stream);
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], duplicate_window: 60_000_000_000 });
    startSink();
    await createInstance(store, 'n1', 'natty', settings({ natsEnable: true, events: ['MESSAGE'] }));
    const appended = await messages(store, 'n1', 20);
    await eventually(async () => (await jsm.streams.info(stream)).state.messages >= 20, 10_000, '20 stored');
    // Publishing the same events again (a retried batch) stores nothing new: the stream deduplicates by msgID.
    const js = observer.jetstream();
    const repeat = await js.publish(`${prefix}.natty.MESSAGE`, new TextEncoder().encode('{}'), {
      msgID: appended[3]!.id,
    });
    expect(repeat.duplicate).toBe(true);
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(20);
    const first = await jsm.streams.getMessage(stream, { seq: info.state.first_seq });
    expect(first.header.get('Nats-Msg-Id')).toBe(appended[0]!.id);
    expect(JSON.parse(new TextDecoder().decode(first.data))).toMatchObject({
      id: appended[0]!.id,
      event: 'MESSAGE',
    });
  });

  it.each([
    ['core NATS', false],
    ['JetStream', true],
  ])('resumes after the connection drops mid-stream, losing nothing (%s)', async (_label, jetstream) => {
    const stream = `ZT_${prefix}`;
    if (jetstream) {
      streams.push(stream);
      await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], duplicate_window: 120_000_000_000 });
    } else {
      observer.subscribe(`${prefix}.>`, { callback: (_e, m) => record(m) });
      await observer.flush();
    }
    proxy = await TcpProxy.start(NATS_PORT);
    const { logs } = startSink(`nats://127.0.0.1:${proxy.port}`);
    await createInstance(store, 'n1', 'natty', settings({ natsEnable: true, events: ['ALL'] }));
    const ids: string[] = [];
    const produce = async (rounds: number): Promise<void> => {
      for (let i = 0; i < rounds; i++) {
        ids.push(...(await messages(store, 'n1', 50, `p${ids.length}-`)).map((e) => e.id));
        await new Promise((r) => setTimeout(r, 15));
      }
    };
    await produce(10);
    proxy.dropAll();
    await produce(10);
    proxy.dropAll();
    await produce(10);

    const storedIds = async (): Promise<Set<string>> => {
      if (!jetstream) return new Set(received.map((g) => g.id));
      const info = await jsm.streams.info(stream);
      const out = new Set<string>();
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        out.add(m.header.get('Nats-Msg-Id'));
      }
      return out;
    };
    await eventually(
      async () =>
        jetstream
          ? (await jsm.streams.info(stream)).state.messages >= ids.length
          : received.length >= ids.length,
      20_000,
      'all published',
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await storedIds()).toEqual(new Set(ids));
    if (jetstream) expect((await jsm.streams.info(stream)).state.messages).toBe(ids.length); // no duplicates stored
    expect(proxy.drops).toBe(2);
    expect(logs()).toContain('NATS sink reconnected');
  });

  /** The ids a stream holds, in its order. */
  const streamIds = async (stream: string): Promise<string[]> => {
    const info = await jsm.streams.info(stream);
    const out: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
      if (m) out.push(m.header.get('Nats-Msg-Id'));
    }
    return out;
  };

  it('a stream that keeps refusing (full, discard: new) pauses the sink: nothing dead-lettered, the position kept, all delivered in order once it has room', async () => {
    const stream = `ZT_${prefix}`;
    streams.push(stream);
    await jsm.streams.add({
      name: stream,
      subjects: [`${prefix}.>`],
      max_msgs: 1,
      discard: DiscardPolicy.New,
      duplicate_window: 120_000_000_000,
    });
    const { logs } = startSink();
    await createInstance(store, 'f1', 'full', settings({ natsEnable: true, events: ['MESSAGE'] }));
    await createInstance(store, 'o1', 'open', settings({ natsEnable: true, events: ['MESSAGE'] }));
    const full = await messages(store, 'f1', 2, 'f');
    const open = [...(await messages(store, 'o1', 3, 'o')), ...(await messages(store, 'o1', 3, 'p'))];
    await eventually(() => logs().some((l) => l.includes('the sink is paused')), 10_000, 'paused');
    // Probed with the refused event, with a capped backoff: no dead letter, the position stays before it.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await store.listDeadLetters('sink-nats')).toEqual([]);
    expect(store.compareCheckpoints(await store.readCheckpoint('sink-nats'), full[1]!.position)).toBe(-1);
    expect(await streamIds(stream)).toEqual([full[0]!.id]);
    // Room again (the limit raised): everything arrives, in log order, each once.
    await jsm.streams.update(stream, { subjects: [`${prefix}.>`], max_msgs: -1, discard: DiscardPolicy.New });
    await eventually(async () => (await streamIds(stream)).length === 8, 10_000, 'all stored');
    expect(await streamIds(stream)).toEqual([...full, ...open].map((e) => e.id));
    expect(await store.listDeadLetters('sink-nats')).toEqual([]);
    expect(logs()).toContain('NATS takes messages again; the sink resumed');
  });

  it('a server down for a while pauses the sink: nothing dead-lettered or dropped, all delivered in order after', async () => {
    const stream = `ZT_${prefix}`;
    streams.push(stream);
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], duplicate_window: 120_000_000_000 });
    proxy = await TcpProxy.start(NATS_PORT);
    startSink(`nats://127.0.0.1:${proxy.port}`);
    await createInstance(store, 'n1', 'natty', settings({ natsEnable: true, events: ['MESSAGE'] }));
    const before = await messages(store, 'n1', 5, 'a');
    await eventually(async () => (await streamIds(stream)).length === 5, 10_000, 'before the outage');
    proxy.down();
    const during = [];
    for (let i = 0; i < 5; i++) {
      during.push(...(await messages(store, 'n1', 4, `d${i}-`)));
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await store.listDeadLetters('sink-nats')).toEqual([]);
    expect(await streamIds(stream)).toEqual(before.map((e) => e.id));
    proxy.up();
    await eventually(async () => (await streamIds(stream)).length === 25, 20_000, 'after the outage');
    expect(await streamIds(stream)).toEqual([...before, ...during].map((e) => e.id));
    expect(await store.listDeadLetters('sink-nats')).toEqual([]);
  });

  it('dead-letters only what the server will never take (larger than the stream allows); the rest flows', async () => {
    const stream = `ZT_${prefix}`;
    streams.push(stream);
    // Only "tiny"'s subjects are captured, by a stream that takes messages of 10 bytes at most.
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.tiny.>`], max_msg_size: 10 });
    observer.subscribe(`${prefix}.open.>`, { callback: (_e, m) => record(m) });
    await observer.flush();
    startSink();
    await createInstance(store, 't1', 'tiny', settings({ natsEnable: true, events: ['MESSAGE'] }));
    await createInstance(store, 'o1', 'open', settings({ natsEnable: true, events: ['MESSAGE'] }));
    const tiny = await messages(store, 't1', 2, 't');
    const open = await messages(store, 'o1', 3, 'o');
    await eventually(() => received.length >= open.length, 10_000, 'the open instance flows');
    expect(received.map((g) => g.id)).toEqual(open.map((e) => e.id));
    await eventually(
      async () => (await store.listDeadLetters('sink-nats')).length === 2,
      10_000,
      'dead letters',
    );
    const dead = await store.listDeadLetters('sink-nats');
    expect(dead.map((d) => d.eventId)).toEqual(tiny.map((e) => e.id));
    expect(dead[0]).toMatchObject({
      attempts: 1,
      instanceId: 't1',
      detail: { statusCode: 400, errCode: 10054 },
    });
    expect(dead[0]!.error).toMatch(/refused the message for good.*message size exceeds maximum allowed/);
  });
});
