/**
 * Shared helpers for the sink tests: instance events in the shapes the runtime appends, a directory, the
 * envelope validator.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import pino from 'pino';
import { DEFAULT_ADVANCED_SETTINGS, type SinkSettings } from '../../../../src/domain/events.ts';
import type { InstanceSinkConfig, SinkDirectory } from '../../../../src/sinks/index.ts';
import { SINK_ENVELOPE_SCHEMA, type SinkEnvelope } from '../../../../src/sinks/index.ts';
import type { InstanceLogWriter } from '../../../../src/sinks/instance-log.ts';
import type { Checkpoint, EventLog, EventStore, RecordedEvent } from '../../../../src/store/port.ts';

export const silentLogger = pino({ level: process.env['SINK_TEST_LOG'] ?? 'silent' });

export const sinks = (patch: Partial<SinkSettings>): SinkSettings => ({
  webhookUrl: null,
  events: ['MESSAGE'],
  rabbitmqEnable: false,
  websocketEnable: false,
  natsEnable: false,
  ...patch,
});

const at = (): string => new Date().toISOString();

export async function createInstance(
  store: EventStore,
  id: string,
  name: string,
  settings: SinkSettings,
): Promise<RecordedEvent> {
  const { events } = await store.append(`instance-${id}`, [
    {
      type: 'InstanceCreated',
      data: {
        at: at(),
        instanceId: id,
        name,
        createdBy: 'admin',
        advancedSettings: DEFAULT_ADVANCED_SETTINGS,
        sinks: settings,
        proxy: null,
      },
    },
  ]);
  return events[0]!;
}

/** Resolves with the event's position: wait for it, not for the log's head (see `messages`). */
export async function configureSinks(
  store: EventStore,
  id: string,
  settings: SinkSettings,
): Promise<Checkpoint> {
  const appended = await store.append(`instance-${id}`, [
    { type: 'EventSinksConfigured', data: { at: at(), sinks: settings } },
  ]);
  return appended.position;
}

export async function deleteInstance(store: EventStore, id: string): Promise<void> {
  await store.append(`instance-${id}`, [{ type: 'InstanceDeleted', data: { at: at(), by: 'admin' } }]);
}

/**
 * `count` MessageReceived events (MESSAGE) on wa-<id>, text `<prefix><n>`, in one append. A test that waits
 * for a reader to pass them waits for their positions: on a shared PostgreSQL the log's head leaves out what
 * committed while any other transaction of the server (another test file's) was still open.
 */
export async function messages(
  store: EventStore,
  id: string,
  count: number,
  prefix = 'm',
  text?: string,
): Promise<RecordedEvent[]> {
  const events = Array.from({ length: count }, (_, i) => ({
    type: 'MessageReceived',
    data: {
      at: at(),
      messageId: `${prefix}${i}`,
      chatJid: '5511999990000@s.whatsapp.net',
      senderJid: '5511999990000@s.whatsapp.net',
      fromMe: false,
      pushName: null,
      messageType: 'conversation',
      text: text ?? `${prefix}${i}`,
      timestamp: at(),
      isGroup: false,
    },
  }));
  return [...(await store.append(`wa-${id}`, events)).events];
}

/** One event of each of several sink kinds: MESSAGE, CALL, PRESENCE_UPDATE, CONNECTION_UPDATE, QR_CODE. */
export async function mixedEvents(store: EventStore, id: string): Promise<RecordedEvent[]> {
  const wa = await store.append(`wa-${id}`, [
    {
      type: 'MessageReceived',
      data: {
        at: at(),
        messageId: 'x1',
        chatJid: 'c',
        senderJid: 's',
        fromMe: false,
        pushName: null,
        messageType: 'conversation',
        text: 'hi',
        timestamp: at(),
        isGroup: false,
      },
    },
    {
      type: 'CallReceived',
      data: { at: at(), callId: 'call1', fromJid: 's', isVideo: false, status: 'offer', rejected: false },
    },
    { type: 'PresenceUpdated', data: { at: at(), chatJid: 'c', participantJid: 's', presence: 'available' } },
    { type: 'RuntimeLogged', data: { at: at(), level: 'info', message: 'not a sink event', context: {} } },
  ]);
  const inst = await store.append(`instance-${id}`, [
    { type: 'ConnectionStarting', data: { at: at(), trigger: 'connect', attempt: 1 } },
    { type: 'QrCodeIssued', data: { at: at(), code: 'qr', expiresAt: at(), count: 1 } },
  ]);
  return [...wa.events, ...inst.events];
}

export class StaticDirectory implements SinkDirectory {
  readonly entries = new Map<string, InstanceSinkConfig>();
  calls = 0;
  set(config: InstanceSinkConfig): void {
    this.entries.set(config.id, config);
  }
  async get(instanceId: string): Promise<InstanceSinkConfig | undefined> {
    this.calls += 1;
    return this.entries.get(instanceId);
  }
}

const ajv = new Ajv2020({ allErrors: true, strict: false });
addFormats.default(ajv);
const validateEnvelope = ajv.compile(SINK_ENVELOPE_SCHEMA);

/** Throws with the schema errors when the value is not a valid envelope. */
export function assertEnvelope(value: unknown): asserts value is SinkEnvelope {
  if (!validateEnvelope(value)) {
    throw new Error(`invalid envelope: ${ajv.errorsText(validateEnvelope.errors)}\n${JSON.stringify(value)}`);
  }
}

export async function eventually(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A logger whose JSON lines the test can read (e.g. to see that a sink reconnected). */
export function capturingLogger(): { logger: pino.Logger; messages: () => string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  return {
    logger,
    messages: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
  };
}

/** The instance log as the runtime writes it (`RuntimeLogged` on the `wa-` stream), for sinks started alone. */
export function storeInstanceLog(store: Pick<EventLog, 'append'>): InstanceLogWriter {
  return async (instanceId, level, message, context) => {
    await store.append(
      `wa-${instanceId}`,
      [{ type: 'RuntimeLogged', data: { at: new Date().toISOString(), level, message, context } }],
      { expectedVersion: 'any' },
    );
  };
}
