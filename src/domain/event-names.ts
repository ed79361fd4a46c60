/**
 * Sink event names (the specification's) and how domain events map to them.
 */
export const CANONICAL_EVENT_NAMES = [
  'MESSAGE',
  'MESSAGE_SENT',
  'MESSAGE_UPDATE',
  'MESSAGE_REACTION',
  'GROUP_UPDATE',
  'GROUP_PARTICIPANT_UPDATE',
  'CONNECTION_UPDATE',
  'QR_CODE',
  'QRCODE_UPDATED',
  'PRESENCE_UPDATE',
  'CALL',
  'CONTACT_UPDATE',
  'LABEL',
  'HEALTH',
] as const;

export type SinkEventName = (typeof CANONICAL_EVENT_NAMES)[number];

/** Evolution GO's code-level names, accepted on input. */
export const EVENT_NAME_ALIASES: Readonly<Record<string, readonly SinkEventName[]>> = {
  SEND_MESSAGE: ['MESSAGE_SENT'],
  READ_RECEIPT: ['MESSAGE_UPDATE'],
  CONNECTION: ['CONNECTION_UPDATE'],
  QRCODE: ['QR_CODE', 'QRCODE_UPDATED'],
  PRESENCE: ['PRESENCE_UPDATE'],
  CONTACT: ['CONTACT_UPDATE'],
  GROUP: ['GROUP_UPDATE', 'GROUP_PARTICIPANT_UPDATE'],
};

export class UnknownEventNameError extends Error {
  override readonly name = 'UnknownEventNameError';
  constructor(readonly unknown: readonly string[]) {
    super(
      `unknown event name(s): ${unknown.join(', ')}. Valid names: ALL, ${CANONICAL_EVENT_NAMES.join(', ')} ` +
        `(aliases: ${Object.keys(EVENT_NAME_ALIASES).join(', ')})`,
    );
  }
}

/**
 * Normalises a subscription list (array or comma-separated string, any case) to canonical names;
 * ['ALL'] stays ['ALL']. Throws UnknownEventNameError listing every unknown name.
 */
export function normaliseEventNames(input: readonly string[] | string): string[] {
  const raw = (typeof input === 'string' ? input.split(',') : input)
    .map((n) => n.trim().toUpperCase())
    .filter(Boolean);
  if (raw.includes('ALL')) return ['ALL'];
  const out = new Set<string>();
  const unknown: string[] = [];
  for (const name of raw) {
    if ((CANONICAL_EVENT_NAMES as readonly string[]).includes(name)) out.add(name);
    else if (EVENT_NAME_ALIASES[name]) EVENT_NAME_ALIASES[name].forEach((n) => out.add(n));
    else unknown.push(name);
  }
  if (unknown.length > 0) throw new UnknownEventNameError(unknown);
  return [...out];
}

/** Which sink event a domain event becomes; undefined = not delivered to sinks. */
export function sinkEventNameOf(
  domainType: string,
  data: Readonly<Record<string, unknown>>,
): SinkEventName | undefined {
  switch (domainType) {
    case 'MessageReceived':
      return 'MESSAGE';
    case 'MessageSent':
      return 'MESSAGE_SENT';
    case 'MessageUpdated':
      return 'MESSAGE_UPDATE';
    case 'MessageReacted':
      return 'MESSAGE_REACTION';
    case 'GroupUpdated':
      return 'GROUP_UPDATE';
    case 'GroupParticipantsUpdated':
      return 'GROUP_PARTICIPANT_UPDATE';
    case 'PresenceUpdated':
      return 'PRESENCE_UPDATE';
    case 'CallReceived':
      return 'CALL';
    case 'ContactUpdated':
      return 'CONTACT_UPDATE';
    case 'LabelUpdated':
      return 'LABEL';
    case 'QrCodeIssued':
      return data['count'] === 1 ? 'QR_CODE' : 'QRCODE_UPDATED';
    case 'HealthDegraded':
    case 'HealthRestored':
    case 'HealingAttempted':
      return 'HEALTH';
    case 'ConnectionStarting':
    case 'InstanceOpened':
    case 'ConnectionClosed':
    case 'SessionRemoved':
      return 'CONNECTION_UPDATE';
    default:
      return undefined;
  }
}

export function isSubscribed(subscribed: readonly string[], name: SinkEventName): boolean {
  return subscribed.includes('ALL') || subscribed.includes(name);
}
