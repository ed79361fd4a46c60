import { Errors } from '../domain/errors.ts';

/**
 * Turns what a user types as a recipient into a WhatsApp JID: a phone number in international form
 * (spaces, dashes, parentheses and a leading + are ignored), or a JID passed through when it is one.
 */
export function normaliseRecipient(input: string): string {
  const value = input.trim();
  if (value.includes('@')) {
    if (/^[0-9]{6,20}(:[0-9]+)?@(s\.whatsapp\.net|c\.us)$/.test(value))
      return value.replace('@c.us', '@s.whatsapp.net');
    if (/^[0-9]{6,20}-?[0-9]*@g\.us$/.test(value) || /^[0-9]{6,20}@lid$/.test(value)) return value;
    throw Errors.validation(
      `number "${value}" is not a valid WhatsApp JID: use digits with the country code, e.g. 5511999999999`,
    );
  }
  const digits = value.replace(/[\s().+-]/g, '');
  if (!/^[0-9]{8,15}$/.test(digits)) {
    throw Errors.validation(
      `number "${value}" is not a phone number: use 8 to 15 digits with the country code, e.g. 5511999999999`,
    );
  }
  return `${digits}@s.whatsapp.net`;
}
