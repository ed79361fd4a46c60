/**
 * Fault modes of linked devices: the ways a real WhatsApp connection goes wrong while its socket stays up,
 * reproduced on purpose so the gateway's health checks can be tested against them.
 *
 * - `mute`: the socket stays open and pings are answered, but nothing is routed to the device (messages,
 *   receipts, notifications wait in its offline queue, as WhatsApp keeps them for a device it believes
 *   gone); lifting the fault (or, with `untilReconnect`, the next login) delivers what waited.
 * - `dropPings`: keepalive iqs (`xmlns=w:p`) get no answer; everything else works.
 * - `corruptSessions`: the next `messages` message stanzas routed to the device carry a damaged Signal
 *   ciphertext, so the device fails to decrypt them (Bad MAC) and asks for them again with retry receipts.
 *
 * A fault with `untilReconnect` ends at the device's next login (a stale route on WhatsApp's side that a
 * reconnect fixes); without it, it lasts until lifted.
 */
import type { Companion } from './model.ts';
import type { BinaryNode } from './nodes.ts';

export type FaultKind = 'mute' | 'dropPings' | 'corruptSessions';

export const FAULT_KINDS: readonly FaultKind[] = ['mute', 'dropPings', 'corruptSessions'];

export interface FaultOptions {
  /** The fault ends at the device's next login. */
  readonly untilReconnect?: boolean;
  /** corruptSessions: how many message stanzas to damage (default 10). */
  readonly messages?: number;
}

export interface DeviceFault {
  readonly kind: FaultKind;
  readonly since: number;
  readonly untilReconnect: boolean;
  /** corruptSessions: message stanzas still to damage. */
  remaining?: number;
}

/** What the control API shows of a device's faults. */
export interface DeviceFaultView {
  readonly device: string;
  readonly faults: ReadonlyArray<{
    readonly kind: FaultKind;
    readonly since: string;
    readonly untilReconnect: boolean;
    readonly remaining?: number;
  }>;
}

const DEFAULT_CORRUPTED_MESSAGES = 10;

export class DeviceFaults {
  private readonly faults = new Map<Companion, Map<FaultKind, DeviceFault>>();

  set(companion: Companion, kind: FaultKind, options: FaultOptions = {}): void {
    let mine = this.faults.get(companion);
    if (!mine) this.faults.set(companion, (mine = new Map()));
    mine.set(kind, {
      kind,
      since: Date.now(),
      untilReconnect: options.untilReconnect ?? false,
      ...(kind === 'corruptSessions'
        ? { remaining: Math.max(1, Math.floor(options.messages ?? DEFAULT_CORRUPTED_MESSAGES)) }
        : {}),
    });
  }

  /** Lifts one fault (or all of the device's): returns whether any was set. */
  lift(companion: Companion, kind?: FaultKind): boolean {
    const mine = this.faults.get(companion);
    if (!mine) return false;
    const lifted = kind ? mine.delete(kind) : mine.size > 0;
    if (!kind || mine.size === 0) this.faults.delete(companion);
    return lifted;
  }

  has(companion: Companion, kind: FaultKind): boolean {
    return this.faults.get(companion)?.has(kind) ?? false;
  }

  /** The device logged in again: faults that a reconnect fixes end. */
  loggedIn(companion: Companion): void {
    const mine = this.faults.get(companion);
    if (!mine) return;
    for (const [kind, fault] of mine) if (fault.untilReconnect) mine.delete(kind);
    if (mine.size === 0) this.faults.delete(companion);
  }

  /**
   * A stanza about to be sent to the device: damages its ciphertext when the device's sessions are
   * corrupted (returns a new stanza; the original may be queued or logged elsewhere).
   */
  tamper(companion: Companion, stanza: BinaryNode): BinaryNode {
    const fault = this.faults.get(companion)?.get('corruptSessions');
    if (!fault || stanza.tag !== 'message' || !Array.isArray(stanza.content)) return stanza;
    let damaged = false;
    const content = stanza.content.map((part) => {
      if (damaged || part.tag !== 'enc' || !(part.content instanceof Uint8Array)) return part;
      damaged = true;
      return { ...part, content: damage(part.content) };
    });
    if (!damaged) return stanza;
    fault.remaining = (fault.remaining ?? 1) - 1;
    if (fault.remaining <= 0) this.lift(companion, 'corruptSessions');
    return { ...stanza, content };
  }

  view(companion: Companion): DeviceFaultView {
    return {
      device: companion.pnJid,
      faults: [...(this.faults.get(companion)?.values() ?? [])].map((f) => ({
        kind: f.kind,
        since: new Date(f.since).toISOString(),
        untilReconnect: f.untilReconnect,
        ...(f.remaining !== undefined ? { remaining: f.remaining } : {}),
      })),
    };
  }

  all(): DeviceFaultView[] {
    return [...this.faults.keys()].map((c) => this.view(c));
  }
}

/**
 * Flips bytes in the body of a Signal message, past the version byte and before the MAC, so the envelope
 * still parses and the MAC check fails: "Bad MAC", as a corrupted session gives.
 */
function damage(ciphertext: Uint8Array): Buffer {
  const copy = Buffer.from(ciphertext);
  const middle = Math.max(1, Math.floor(copy.length / 2));
  for (let i = middle; i < Math.min(copy.length - 8, middle + 4); i++) copy[i] = copy[i]! ^ 0xff;
  return copy;
}
