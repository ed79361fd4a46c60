/**
 * The sinks process is killed with SIGKILL in the middle of a 5,000-event burst and started again: every
 * event still reaches the webhook, RabbitMQ, NATS and a WebSocket client (resuming with ?from=) at least
 * once, and a repeat is always the same event (same id, same body).
 *
 * Real services: a fresh PostgreSQL database (the store and the delivery log), RabbitMQ, NATS.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SINK_MIGRATIONS_DIR } from '../../../src/sinks/index.ts';
import { openEventStore, type OpenedEventStore } from '../../../src/store/index.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { createInstance, eventually, messages, sinks as settings } from './support/fixtures.ts';
import { exited, spawnSinksProcess } from './support/sinks-process.ts';

const PG_ADMIN_URL = process.env['SINK_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const BURST = 5_000;

/** Every body seen per id; `sets` of repeats must all be identical. */
class Seen {
  readonly bodies = new Map<string, string>();
  readonly mismatched: string[] = [];
  count = 0;
  add(id: string, body: string, normalise: (b: string) => string = (b) => b): void {
    this.count += 1;
    const previous = this.bodies.get(id);
    if (previous !== undefined && normalise(previous) !== normalise(body)) this.mismatched.push(id);
    this.bodies.set(id, body);
  }
}

describe('sinks survive SIGKILL during a burst', () => {
  const database = `zw_sinks_crash_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const exchange = `zapwire.test.crash.${randomUUID()}`;
  const natsPrefix = `zc${randomUUID().slice(0, 8)}`;
  // Several instances, as in a gateway: each has its own ordered webhook queue.
  const instances = Array.from({ length: 5 }, (_, i) => ({
    id: `crash-${i}`,
    name: `crashy${i}`,
    webhookSecret: `secret-${i}`,
  }));
  let admin: pg.Client;
  let opened: OpenedEventStore;
  let receiver: WebhookReceiver;
  let rabbit: ChannelModel;
  let channel: Channel;
  let nats: NatsConnection;
  let child: ChildProcess | undefined;
  const webhook = new Seen();
  const rabbitSeen = new Seen();
  const natsSeen = new Seen();
  const wsSeen = new Seen();

  const spawnChild = (): Promise<{ process: ChildProcess; port: number }> =>
    spawnSinksProcess({
      databaseUrl: PG_ADMIN_URL.replace(/\/[^/]*$/, `/${database}`),
      amqpUrl: AMQP_URL,
      amqpExchange: exchange,
      natsUrl: NATS_URL,
      natsPrefix,
      instances: instances.map((instance) => ({ ...instance, sinks: sinksOf() })),
    });

  const sinksOf = () =>
    settings({
      webhookUrl: receiver.url('/crash'),
      events: ['ALL'],
      rabbitmqEnable: true,
      natsEnable: true,
      websocketEnable: true,
    });

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    opened = await openEventStore({
      dataDir: '/nonexistent',
      databaseUrl: PG_ADMIN_URL.replace(/\/[^/]*$/, `/${database}`),
      migrations: [SINK_MIGRATIONS_DIR],
    });
    receiver = await WebhookReceiver.start();
    receiver.onRequest = (r) => {
      const body = JSON.parse(r.rawBody) as { id: string };
      webhook.add(body.id, r.rawBody);
    };
    rabbit = await amqp.connect(AMQP_URL);
    channel = await rabbit.createChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, exchange, '#');
    await channel.consume(
      queue,
      (m) => m && rabbitSeen.add(m.properties.messageId as string, m.content.toString()),
      {
        noAck: true,
      },
    );
    nats = await connect({ servers: NATS_URL });
    nats.subscribe(`${natsPrefix}.>`, {
      callback: (_e, m) => {
        const body = new TextDecoder().decode(m.data);
        natsSeen.add((JSON.parse(body) as { id: string }).id, body);
      },
    });
    await nats.flush();
  });

  afterAll(async () => {
    child?.kill('SIGKILL');
    await receiver?.close();
    await channel?.deleteExchange(exchange).catch(() => undefined);
    await rabbit?.close().catch(() => undefined);
    await nats?.close().catch(() => undefined);
    await opened?.store.close().catch(() => undefined);
    await opened?.db.close().catch(() => undefined);
    await admin?.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    await admin?.end();
  });

  it(
    'delivers all 5,000 events to every sink at least once, repeats only with the same id',
    { timeout: 240_000 },
    async () => {
      const { store } = opened;
      for (const instance of instances) await createInstance(store, instance.id, instance.name, sinksOf());
      const t0 = Date.now();
      const phases: string[] = [];
      const phase = (name: string): void => void phases.push(`${name} +${Date.now() - t0} ms`);
      let started = await spawnChild();
      phase('first sinks process ready');
      child = started.process;

      // A WebSocket client that reconnects with ?from=<last position received>, as documented.
      let lastPosition: string | undefined;
      let socket: WebSocket | undefined;
      const openSocket = (port: number): void => {
        const from = lastPosition ? `?from=${encodeURIComponent(lastPosition)}` : '?from=start';
        socket = new WebSocket(`ws://127.0.0.1:${port}/ws${from}`, {
          headers: { apikey: 'admin-key-for-crash-test' },
        });
        socket.on('message', (data) => {
          const body = String(data);
          const frame = JSON.parse(body) as { id: string; position: string };
          wsSeen.add(frame.id, body);
          lastPosition = frame.position;
        });
        socket.on('error', () => undefined);
      };
      openSocket(started.port);

      // Half the burst goes in while the sinks run; SIGKILL; the other half goes in while they are down.
      const ids: string[] = [];
      for (let i = 0; ids.length < BURST; i++) {
        ids.push(
          ...(await messages(store, instances[i % instances.length]!.id, 50, `burst${i}-`)).map((e) => e.id),
        );
        if (ids.length === BURST / 2) child.kill('SIGKILL');
      }
      phase('burst appended');
      await exited(child);
      const beforeRestart = {
        webhook: webhook.bodies.size,
        rabbit: rabbitSeen.bodies.size,
        nats: natsSeen.bodies.size,
      };
      expect(beforeRestart.webhook).toBeLessThan(BURST);

      started = await spawnChild();
      phase('second sinks process ready');
      child = started.process;
      openSocket(started.port);

      const complete = (seen: Seen): boolean => ids.every((id) => seen.bodies.has(id));
      const missing = (seen: Seen): string => {
        const idx = ids.map((id, i) => (seen.bodies.has(id) ? -1 : i)).filter((i) => i >= 0);
        return idx.length === 0 ? '0' : `${idx.length} (indexes ${idx[0]}..${idx.at(-1)})`;
      };
      const done = new Set<string>();
      const track = (name: string, seen: Seen): boolean => {
        const ok = complete(seen);
        if (ok && !done.has(name)) {
          done.add(name);
          phase(`${name} complete`);
        }
        return ok;
      };
      await eventually(
        () =>
          [
            track('webhook', webhook),
            track('rabbitmq', rabbitSeen),
            track('nats', natsSeen),
            track('websocket', wsSeen),
          ].every(Boolean),
        90_000,
        'every sink has every event',
      ).catch((error: Error) => {
        throw new Error(
          `${error.message}; missing webhook=${missing(webhook)} rabbitmq=${missing(rabbitSeen)} nats=${missing(natsSeen)} websocket=${missing(wsSeen)}; before restart ${JSON.stringify(beforeRestart)}`,
        );
      });
      phase('every sink has every event');
      for (const seen of [webhook, rabbitSeen, natsSeen, wsSeen]) {
        expect(seen.mismatched).toEqual([]);
        // Only the burst's ids.
        expect([...seen.bodies.keys()].filter((id) => !ids.includes(id))).toEqual([]);
      }
      socket?.close();
      child.kill('SIGTERM');
      // For the report: how many repeats the crash cost.
      console.info(
        `crash test: ${phases.join(', ')}; repeats webhook=${webhook.count - BURST} rabbitmq=${rabbitSeen.count - BURST} nats=${natsSeen.count - BURST} websocket=${wsSeen.count - BURST}; delivered before the kill: ${JSON.stringify(beforeRestart)}`,
      );
    },
  );
});
