/**
 * A webhook receiver is down while a backlog builds; it heals, and the sinks process is killed with
 * SIGKILL in the middle of the drain, then started again. Every event arrives, the first arrivals of each
 * instance are in log order, a repeat carries the same id and body, and the repeats are bounded by what
 * the killed process had delivered since its queues last recorded their positions.
 *
 * Real services: a fresh PostgreSQL database, a real HTTP receiver, the sinks in a process of their own.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SINK_MIGRATIONS_DIR } from '../../../src/sinks/index.ts';
import { openEventStore, type OpenedEventStore } from '../../../src/store/index.ts';
import { WebhookReceiver } from '../../support/webhook-receiver.ts';
import { createInstance, eventually, messages, sinks as settings } from './support/fixtures.ts';
import { exited, spawnSinksProcess } from './support/sinks-process.ts';

const PG_ADMIN_URL = process.env['SINK_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PER_INSTANCE = 400;

describe('SIGKILL while a webhook backlog drains', () => {
  const database = `zw_drain_crash_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const instances = Array.from({ length: 5 }, (_, i) => ({
    id: `drain-${i}`,
    name: `drainy${i}`,
    webhookSecret: `secret-${i}`,
  }));
  let admin: pg.Client;
  let opened: OpenedEventStore;
  let receiver: WebhookReceiver;
  let child: ChildProcess | undefined;

  const spawnChild = async (): Promise<ChildProcess> =>
    (
      await spawnSinksProcess({
        databaseUrl: PG_ADMIN_URL.replace(/\/[^/]*$/, `/${database}`),
        amqpUrl: 'amqp://guest:guest@127.0.0.1:5672',
        amqpExchange: `zapwire.test.drain.${randomUUID()}`,
        natsUrl: 'nats://127.0.0.1:4222',
        natsPrefix: `zd${randomUUID().slice(0, 8)}`,
        instances: instances.map((instance) => ({ ...instance, sinks: sinksOf() })),
      })
    ).process;
  const sinksOf = () => settings({ webhookUrl: receiver.url('/drain'), events: ['MESSAGE'] });

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
  });

  afterAll(async () => {
    child?.kill('SIGKILL');
    await receiver?.close();
    await opened?.store.close().catch(() => undefined);
    await opened?.db.close().catch(() => undefined);
    await admin?.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    await admin?.end();
  });

  it(
    'delivers every event, first arrivals in order, repeats only with the same id and bounded',
    { timeout: 180_000 },
    async () => {
      const { store, db } = opened;
      for (const instance of instances) await createInstance(store, instance.id, instance.name, sinksOf());
      let up = false;
      // Slow enough that the drain is still running when the process is killed.
      receiver.respond(() => (up ? { status: 200, delayMs: 2 } : { status: 503 }));
      child = await spawnChild();
      const ids = new Map<string, string[]>();
      for (const instance of instances) {
        const appended = await messages(store, instance.id, PER_INSTANCE, `${instance.name}-`);
        ids.set(
          instance.id,
          appended.map((e) => e.id),
        );
      }
      const total = instances.length * PER_INSTANCE;
      await eventually(
        async () =>
          (await db.query(`SELECT 1 FROM zw_webhook_queues WHERE state = 'paused'`)).rows.length ===
          instances.length,
        30_000,
        'every queue paused',
      );
      up = true;
      const unique = (): Set<string> =>
        new Set(receiver.accepted('/drain').map((r) => String(r.headers['x-zapwire-event-id'])));
      await eventually(() => unique().size >= total * 0.4, 60_000, 'the drain under way');
      child.kill('SIGKILL');
      await exited(child);
      const beforeKill = unique().size;
      expect(beforeKill).toBeLessThan(total);

      child = await spawnChild();
      await eventually(() => unique().size === total, 90_000, 'every event after the restart');
      const accepted = receiver.accepted('/drain');
      const repeats = accepted.length - total;
      // A repeat is the same event: same id, same body.
      const bodies = new Map<string, string>();
      for (const request of accepted) {
        const id = String(request.headers['x-zapwire-event-id']);
        const body = request.rawBody;
        expect(bodies.get(id) ?? body).toBe(body);
        bodies.set(id, body);
      }
      // First arrivals of each instance in log order.
      for (const instance of instances) {
        const firsts: string[] = [];
        for (const request of accepted) {
          const id = String(request.headers['x-zapwire-event-id']);
          if (ids.get(instance.id)!.includes(id) && !firsts.includes(id)) firsts.push(id);
        }
        expect(firsts).toEqual(ids.get(instance.id));
      }
      // Repeats: at most what each queue delivered since it last recorded its position (every 500 ms) plus
      // its pipeline window; far below the backlog.
      expect(repeats).toBeLessThan(total / 4);
      console.info(
        `drain crash test: ${total} events, ${beforeKill} delivered before the kill, ${repeats} repeats`,
      );
      child.kill('SIGTERM');
    },
  );
});
