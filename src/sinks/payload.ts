/**
 * What a sink sends for an event: the one place where the body of a webhook request, a RabbitMQ message
 * and a NATS message is built, with one renderer per wire profile (API_COMPAT). The default renderer is
 * zapwire's envelope (envelope.ts); the Evolution GO renderer (src/http/profiles/evolution-go/sink-payload.ts, with the rest of
 * that profile) speaks the webhook
 * shape Evolution GO's clients parse. The WebSocket (`/ws`) is zapwire's own protocol and always carries the
 * envelope: its frames hold the `position` a client resumes from.
 */
import type { SinkEventName } from '../domain/event-names.ts';
import type { RecordedEvent } from '../store/port.ts';
import { buildEnvelope, serializeEnvelope, type EnvelopeInstance } from './envelope.ts';
import { renderEvolutionGoPayload } from '../http/profiles/evolution-go/sink-payload.ts';

export type PayloadProfile = 'default' | 'evolution-go';

export interface PayloadRenderer {
  readonly profile: PayloadProfile;
  /**
   * The body for this event, or undefined when the profile sends nothing for it (Evolution GO has no
   * counterpart of some of zapwire's events). Deterministic: a retry renders the same bytes.
   */
  render(event: RecordedEvent, instance: EnvelopeInstance, name: SinkEventName): Promise<string | undefined>;
}

export interface PayloadOptions {
  /** QRCODE_MAX_COUNT, shown as `maxCount` in Evolution GO's QRCode payload. */
  readonly qrCodeMaxCount?: number;
}

export const DEFAULT_PAYLOAD: PayloadRenderer = {
  profile: 'default',
  render: (event, instance, name) => Promise.resolve(serializeEnvelope(buildEnvelope(event, instance, name))),
};

export function payloadRenderer(
  profile: PayloadProfile = 'default',
  options: PayloadOptions = {},
): PayloadRenderer {
  if (profile === 'default') return DEFAULT_PAYLOAD;
  return {
    profile,
    async render(event, instance) {
      const payload = await renderEvolutionGoPayload(event, instance, options);
      return payload === undefined ? undefined : JSON.stringify(payload);
    },
  };
}
