/**
 * Evolution GO's event names (its `event_types` package) and zapwire's sink events. Evolution GO has two
 * kinds zapwire does not produce (HISTORY_SYNC, NEWSLETTER): they are accepted and subscribe to nothing.
 */
import type { SinkEventName } from '../../../domain/event-names.ts';

export const EVOLUTION_EVENT_NAMES = [
  'MESSAGE',
  'SEND_MESSAGE',
  'READ_RECEIPT',
  'PRESENCE',
  'HISTORY_SYNC',
  'CHAT_PRESENCE',
  'CALL',
  'CONNECTION',
  'LABEL',
  'CONTACT',
  'GROUP',
  'NEWSLETTER',
  'QRCODE',
] as const;

export type EvolutionEventName = (typeof EVOLUTION_EVENT_NAMES)[number];

const TO_SINK: Readonly<Record<EvolutionEventName, readonly SinkEventName[]>> = {
  MESSAGE: ['MESSAGE', 'MESSAGE_REACTION'],
  SEND_MESSAGE: ['MESSAGE_SENT'],
  READ_RECEIPT: ['MESSAGE_UPDATE'],
  PRESENCE: ['PRESENCE_UPDATE'],
  HISTORY_SYNC: [],
  CHAT_PRESENCE: ['PRESENCE_UPDATE'],
  CALL: ['CALL'],
  CONNECTION: ['CONNECTION_UPDATE'],
  LABEL: ['LABEL'],
  CONTACT: ['CONTACT_UPDATE'],
  GROUP: ['GROUP_UPDATE', 'GROUP_PARTICIPANT_UPDATE'],
  NEWSLETTER: [],
  QRCODE: ['QR_CODE', 'QRCODE_UPDATED'],
};

/** HEALTH is zapwire's own (docs/health.md): Evolution GO has no such event, so it has no name here. */
const FROM_SINK: Readonly<Record<Exclude<SinkEventName, 'HEALTH'>, EvolutionEventName>> = {
  MESSAGE: 'MESSAGE',
  MESSAGE_REACTION: 'MESSAGE',
  MESSAGE_SENT: 'SEND_MESSAGE',
  MESSAGE_UPDATE: 'READ_RECEIPT',
  PRESENCE_UPDATE: 'PRESENCE',
  CALL: 'CALL',
  CONNECTION_UPDATE: 'CONNECTION',
  LABEL: 'LABEL',
  CONTACT_UPDATE: 'CONTACT',
  GROUP_UPDATE: 'GROUP',
  GROUP_PARTICIPANT_UPDATE: 'GROUP',
  QR_CODE: 'QRCODE',
  QRCODE_UPDATED: 'QRCODE',
};

export function isEvolutionEventName(name: string): name is EvolutionEventName {
  return (EVOLUTION_EVENT_NAMES as readonly string[]).includes(name);
}

/** zapwire's sink events for Evolution GO names (upper-cased first); `ALL` stays `ALL`. */
export function sinkEventsOf(names: readonly EvolutionEventName[] | readonly ['ALL']): string[] {
  if ((names as readonly string[]).includes('ALL')) return ['ALL'];
  const out = new Set<string>();
  for (const name of names as readonly EvolutionEventName[]) TO_SINK[name].forEach((n) => out.add(n));
  return [...out];
}

/** The subscription as Evolution GO writes it: `"MESSAGE,QRCODE"`, or every name for ALL. */
export function evolutionEventString(sinkEvents: readonly string[]): string {
  if (sinkEvents.includes('ALL')) return EVOLUTION_EVENT_NAMES.join(',');
  const out = new Set<string>();
  for (const name of sinkEvents) {
    const evolution = FROM_SINK[name as Exclude<SinkEventName, 'HEALTH'>] as EvolutionEventName | undefined;
    if (evolution) out.add(evolution);
  }
  return EVOLUTION_EVENT_NAMES.filter((n) => out.has(n)).join(',');
}
