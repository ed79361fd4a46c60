/**
 * Prometheus metrics of the outboxes this node holds: per instance (`instance_id`), what waits, how long
 * the oldest has waited, whether sending is paused; and what became of the sends since the start.
 */
import { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../../metrics.ts';
import type { SendOutbox } from './send-outbox.ts';

export function registerOutboxMetrics(metrics: MetricsRegistry, outbox: SendOutbox): void {
  const registry = metrics.prometheus;
  const gauges: Array<[string, string, (s: ReturnType<SendOutbox['statuses']>[number]) => number]> = [
    [
      'zapwire_outbox_queued',
      'Sends due and waiting in the outbox (pacing, a pause, no connection)',
      (s) => s.queued,
    ],
    ['zapwire_outbox_scheduled', 'Sends scheduled for later (sendAt)', (s) => s.scheduled],
    ['zapwire_outbox_sending', 'Sends handed to WhatsApp, not answered yet', (s) => s.sending],
    [
      'zapwire_outbox_oldest_wait_seconds',
      'How long the oldest due send of the outbox has waited',
      (s) => s.oldestWaitMs / 1000,
    ],
    [
      'zapwire_outbox_paused',
      '1 while sending is paused after WhatsApp restricted the number',
      (s) => (s.paused ? 1 : 0),
    ],
  ];
  for (const [name, help, value] of gauges) {
    new Gauge({
      name,
      help,
      labelNames: ['instance_id'],
      registers: [registry],
      collect() {
        this.reset();
        for (const status of outbox.statuses()) this.set({ instance_id: status.instanceId }, value(status));
      },
    });
  }
  new Counter({
    name: 'zapwire_outbox_sends_total',
    help: 'Sends finished on this node since it started, by outcome (sent, failed, cancelled)',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [outcome, n] of Object.entries(outbox.counters)) this.inc({ outcome }, n);
    },
  });
  new Counter({
    name: 'zapwire_outbox_restrictions_total',
    help: 'Times WhatsApp restricted sending of an instance on this node (SendingRestricted)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(outbox.restrictions);
    },
  });
}
