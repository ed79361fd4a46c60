/**
 * What WhatsApp does with sends that it must not carry as they are, in the sandbox:
 *
 * - **Repeated message ids.** A message id is the key of a message: a phone that receives a message whose
 *   sender and id it has seen already drops it (acknowledges it again, shows nothing new), as WhatsApp's
 *   clients do. A sender that sends the same message again after a crash, with the same id, is seen once.
 *   The sandbox counts the repeats it dropped per account (`GET /control/accounts/:a/repeats`).
 * - **Sending restrictions.** An account can be made restricted: the server answers each message its
 *   devices send with `<ack class="message" error="463">` (the account may not reach out: WhatsApp's
 *   restriction, or a reach-out time lock) or `error="429"` (rate limit), and carries nothing. Baileys
 *   surfaces that ack in `handleBadAck` (Socket/messages-recv.js). Lifted after `count` refusals, after
 *   `durationMs`, or by hand (`POST|DELETE /control/accounts/:a/sending-restriction`).
 * - **Slow acknowledgements.** The server can hold the ack of an account's messages for a while after it
 *   delivered them (`POST /control/accounts/:a/ack-delay {"ms": …}`): the window in which a sender that
 *   crashes has sent a message without knowing it.
 */
import type { Account } from './model.ts';
import type { SandboxContext } from './context.ts';

export type RestrictionCode = '463' | '429' | '479';

export interface SendingRestrictionOptions {
  /** The error of the ack (default 463). */
  readonly code?: RestrictionCode;
  /** Refuse this many messages, then send normally again (default: until lifted). */
  readonly count?: number;
  /** Refuse for this long (default: until lifted). */
  readonly durationMs?: number;
}

export interface SendingRestrictionInfo {
  readonly code: RestrictionCode;
  /** Messages still to refuse (null: no count). */
  readonly remaining: number | null;
  /** When it lifts by itself (ISO; null: no time limit). */
  readonly until: string | null;
  /** Messages refused so far. */
  readonly refused: number;
}

export interface RepeatRecord {
  readonly id: string;
  readonly from: string;
  /** How many times the message arrived again after the first. */
  readonly repeats: number;
  readonly lastAt: number;
}

/** Message keys a phone remembers, per account (WhatsApp keeps far more; enough for any test). */
const REMEMBERED_KEYS = 20_000;

interface Restriction {
  code: RestrictionCode;
  remaining: number | null;
  until: number | null;
  refused: number;
}

class SendFaults {
  readonly restrictions = new Map<Account, Restriction>();
  readonly ackDelays = new Map<Account, number>();
  readonly seen = new Map<Account, Map<string, RepeatRecord | null>>();
}

const faultsOf = new WeakMap<SandboxContext, SendFaults>();

function faults(server: SandboxContext): SendFaults {
  let found = faultsOf.get(server);
  if (!found) faultsOf.set(server, (found = new SendFaults()));
  return found;
}

// ---- restrictions -----------------------------------------------------------------------------

export function restrictSending(
  server: SandboxContext,
  account: Account,
  options: SendingRestrictionOptions = {},
): SendingRestrictionInfo {
  const restriction: Restriction = {
    code: options.code ?? '463',
    remaining: options.count ?? null,
    until: options.durationMs !== undefined ? Date.now() + options.durationMs : null,
    refused: 0,
  };
  faults(server).restrictions.set(account, restriction);
  server.logger.info('sending restricted', { phone: account.pn, code: restriction.code });
  return infoOf(restriction);
}

export function liftSendingRestriction(server: SandboxContext, account: Account): void {
  faults(server).restrictions.delete(account);
}

export function sendingRestriction(server: SandboxContext, account: Account): SendingRestrictionInfo | null {
  const restriction = current(server, account);
  return restriction ? infoOf(restriction) : null;
}

/**
 * The error the server answers this account's next message with (and counts it), or undefined when the
 * message goes through.
 */
export function refusalOf(server: SandboxContext, account: Account): RestrictionCode | undefined {
  const restriction = current(server, account);
  if (!restriction) return undefined;
  restriction.refused++;
  if (restriction.remaining !== null) restriction.remaining--;
  server.logger.info('message refused: sending restricted', { phone: account.pn, code: restriction.code });
  return restriction.code;
}

function current(server: SandboxContext, account: Account): Restriction | undefined {
  const all = faults(server).restrictions;
  const restriction = all.get(account);
  if (!restriction) return undefined;
  const over =
    (restriction.remaining !== null && restriction.remaining <= 0) ||
    (restriction.until !== null && Date.now() >= restriction.until);
  if (over) {
    all.delete(account);
    return undefined;
  }
  return restriction;
}

function infoOf(restriction: Restriction): SendingRestrictionInfo {
  return {
    code: restriction.code,
    remaining: restriction.remaining,
    until: restriction.until === null ? null : new Date(restriction.until).toISOString(),
    refused: restriction.refused,
  };
}

// ---- slow acknowledgements --------------------------------------------------------------------

/** Holds the server's ack of `account`'s messages this long after delivering them (0: at once). */
export function delayAcks(server: SandboxContext, account: Account, ms: number): void {
  if (ms > 0) faults(server).ackDelays.set(account, ms);
  else faults(server).ackDelays.delete(account);
}

export function ackDelayOf(server: SandboxContext, account: Account): number {
  return faults(server).ackDelays.get(account) ?? 0;
}

// ---- repeated ids -----------------------------------------------------------------------------

/** The phone of `account` gets message `id` from `from`: true when it had it already (drop it). */
export function isRepeat(server: SandboxContext, account: Account, from: string, id: string): boolean {
  const all = faults(server).seen;
  let keys = all.get(account);
  if (!keys) all.set(account, (keys = new Map()));
  const key = `${from} ${id}`;
  if (!keys.has(key)) {
    keys.set(key, null);
    if (keys.size > REMEMBERED_KEYS) keys.delete(keys.keys().next().value as string);
    return false;
  }
  const earlier = keys.get(key);
  keys.set(key, { id, from, repeats: (earlier?.repeats ?? 0) + 1, lastAt: Date.now() });
  server.logger.info('phone dropped a message it had already (same sender and id)', {
    phone: account.pn,
    id,
    from,
  });
  return true;
}

/** The messages `account`'s phone received more than once and showed once. */
export function repeatsOf(server: SandboxContext, account: Account): RepeatRecord[] {
  const keys = faults(server).seen.get(account);
  if (!keys) return [];
  return [...keys.values()].filter((r): r is RepeatRecord => r !== null);
}
