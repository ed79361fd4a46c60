/** The QR code to show and the phone to pair with: the same rules in every wire profile. */
import QRCode from 'qrcode';
import type { InstanceView } from '../../projections/queries.ts';
import { Errors } from '../domain/errors.ts';

/** The QR code to scan now: 409 when connected already, 400 when none is showing (yet). */
export async function currentQr(view: InstanceView): Promise<{
  qrcode: string;
  code: string;
  expiresAt: string;
  count: number;
  pairingCode: string | null;
}> {
  if (view.state === 'open') throw Errors.alreadyConnected();
  if (!view.qrcode || view.state !== 'qr') throw Errors.qrNotReady(view.state);
  const png = await QRCode.toDataURL(view.qrcode.code, { errorCorrectionLevel: 'L', margin: 2, width: 300 });
  return {
    qrcode: `${png}|${view.qrcode.code}`,
    code: view.qrcode.code,
    expiresAt: view.qrcode.expiresAt,
    count: view.qrcode.count,
    pairingCode: view.pairingCode,
  };
}

/** The digits of a phone to pair with: 8 to 15 with the country code. */
export function pairingPhone(phone: string): string {
  const digits = phone.replace(/\D/g, '');
  if (digits.length < 8 || digits.length > 15)
    throw Errors.validation('phone: expected 8 to 15 digits with the country code, e.g. 5511999999999');
  return digits;
}
