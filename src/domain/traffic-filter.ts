/**
 * The ignoreGroups / ignoreStatus rule: which WhatsApp traffic an instance's settings drop before it is
 * recorded. One rule for every place that filters (the Baileys adapter drops early, the runtime checks
 * again for any connector).
 */
import type { AdvancedSettings, WhatsAppEvent } from './events.ts';

/** The chat an event is about. */
export function chatOfEvent(event: WhatsAppEvent): string {
  const data = event.data as unknown as Record<string, unknown>;
  const chat = data['chatJid'] ?? data['groupJid'] ?? data['fromJid'] ?? '';
  return typeof chat === 'string' ? chat : '';
}

/** Whether the instance's settings say to drop this event before it is recorded. */
export function isIgnoredBySettings(event: WhatsAppEvent, settings: AdvancedSettings): boolean {
  const chat = chatOfEvent(event);
  if (settings.ignoreGroups && chat.endsWith('@g.us')) return true;
  if (settings.ignoreStatus && chat === 'status@broadcast') return true;
  return false;
}
