/**
 * Calls, presence and chat states, in both directions: what phones do (offer a call, come online, type)
 * and what companions send (reject a call, subscribe to presence, type).
 */
import type { ClientConnection } from './connection.ts';
import { callId as newCallId, stanzaId } from './ids.ts';
import type { Account } from './model.ts';
import { firstChild, node, unixSeconds, type BinaryNode } from './nodes.ts';
import { SandboxError } from './errors.ts';
import type { SandboxContext } from './context.ts';
import type { Addressing, CallRecord, ChatState, PresenceState } from './types.ts';

// ---- calls ------------------------------------------------------------------------------------------

interface CallState {
  readonly record: CallRecord;
  readonly caller: Account;
  readonly callee: Account;
  readonly creatorJid: string;
}

const CALLS = new WeakMap<SandboxContext, Map<string, CallState>>();

function calls(server: SandboxContext): Map<string, CallState> {
  let map = CALLS.get(server);
  if (!map) CALLS.set(server, (map = new Map()));
  return map;
}

export function startCall(
  server: SandboxContext,
  caller: Account,
  callee: Account,
  opts: { video?: boolean; addressing?: Addressing } = {},
): CallRecord {
  if (caller === callee) throw new SandboxError(400, 'an account cannot call itself');
  const callId = newCallId();
  const video = opts.video ?? false;
  const record: CallRecord = {
    callId,
    from: caller.pnJid,
    to: callee.pnJid,
    video,
    status: 'offer',
    at: Date.now(),
  };
  const creatorJid = opts.addressing === 'lid' ? caller.lidJid : caller.pnJid;
  calls(server).set(callId, { record, caller, callee, creatorJid });
  caller.calls.push(record);
  callee.calls.push(record);
  const media = [node('audio', { enc: 'opus', rate: 16000 }), node('audio', { enc: 'opus', rate: 8000 })];
  if (video)
    media.push(
      node('video', { enc: 'vp8', dec: 'vp8', orientation: 0, screen_width: 1920, screen_height: 1080 }),
    );
  server.deliverToAccount(callee, () =>
    node('call', { from: caller.pnJid, id: stanzaId(), t: unixSeconds(), notify: caller.name }, [
      node(
        'offer',
        {
          'call-id': callId,
          'call-creator': creatorJid,
          caller_pn: opts.addressing === 'lid' ? caller.pnJid : undefined,
        },
        [...media, node('net', { medium: 3 }), node('encopt', { keygen: 2 })],
      ),
    ]),
  );
  return record;
}

/** The caller hangs up (or the call times out, which Baileys reports as a missed call). */
export function endCall(server: SandboxContext, callId: string, reason?: 'timeout'): CallRecord {
  const state = calls(server).get(callId);
  if (!state) throw new SandboxError(404, `no call ${callId}`);
  state.record.status = 'terminated';
  server.deliverToAccount(state.callee, () =>
    node('call', { from: state.caller.pnJid, id: stanzaId(), t: unixSeconds() }, [
      node('terminate', { 'call-id': callId, 'call-creator': state.creatorJid, reason }),
    ]),
  );
  return state.record;
}

/** Companions answer a call offer with `<call><reject/></call>`, a query that waits for this ack. */
export function handleClientCall(server: SandboxContext, conn: ClientConnection, stanza: BinaryNode): void {
  const companion = conn.companion;
  const action = firstChild(stanza);
  conn.send(node('ack', { class: 'call', id: stanza.attrs.id, from: stanza.attrs.to, type: action?.tag }));
  if (!companion || action?.tag !== 'reject') return;
  const state = calls(server).get(action.attrs['call-id'] ?? '');
  if (!state) return;
  state.record.status = 'rejected';
  state.record.rejectedBy = companion.pnJid;
  // The callee's other devices stop ringing.
  server.deliverToAccount(
    state.callee,
    () =>
      node('call', { from: state.caller.pnJid, id: stanzaId(), t: unixSeconds() }, [
        node('terminate', { 'call-id': state.record.callId, 'call-creator': state.creatorJid }),
      ]),
    companion,
  );
}

// ---- presence -------------------------------------------------------------------------------------------

function presenceStanza(account: Account): BinaryNode {
  return node('presence', {
    from: account.pnJid,
    type: account.presence,
    last: account.presence === 'unavailable' ? (account.lastSeen ?? 'deny') : undefined,
  });
}

export function setPresence(server: SandboxContext, account: Account, presence: PresenceState): void {
  account.presence = presence;
  if (presence === 'unavailable') account.lastSeen = unixSeconds();
  for (const other of server.accounts()) {
    for (const companion of other.activeCompanions()) {
      if (companion.presenceSubscriptions.has(account))
        server.sendIfOnline(companion, presenceStanza(account));
    }
  }
}

export function handleClientPresence(
  server: SandboxContext,
  conn: ClientConnection,
  stanza: BinaryNode,
): void {
  const companion = conn.companion;
  if (!companion) return;
  const { type, to } = stanza.attrs;
  if (type === 'subscribe' && to) {
    const target = server.findAccount(to);
    if (!target) return;
    companion.presenceSubscriptions.add(target);
    conn.send(presenceStanza(target));
    return;
  }
  if (type === 'available' || type === 'unavailable') {
    setPresence(server, companion.account, type);
  }
}

// ---- chat states ----------------------------------------------------------------------------------------

function chatStateChild(state: ChatState): BinaryNode {
  if (state === 'recording') return node('composing', { media: 'audio' });
  return node(state);
}

/** `from`'s phone shows "typing…" (or recording, or stops) in the chat with `to`. */
export function sendChatState(server: SandboxContext, from: Account, to: Account, state: ChatState): void {
  server.deliverToAccount(to, () => node('chatstate', { from: from.pnJid }, [chatStateChild(state)]));
}

export function handleClientChatState(
  server: SandboxContext,
  conn: ClientConnection,
  stanza: BinaryNode,
): void {
  const companion = conn.companion;
  const target = server.findAccount(stanza.attrs.to ?? '');
  const action = firstChild(stanza);
  if (!companion || !target || !action) return;
  const state: ChatState =
    action.attrs.media === 'audio' ? 'recording' : action.tag === 'paused' ? 'paused' : 'composing';
  target.chatStates.push({
    from: companion.account.pnJid,
    fromDevice: companion.pnJid,
    state,
    at: Date.now(),
  });
  for (const other of target.activeCompanions()) {
    server.sendIfOnline(other, node('chatstate', { from: companion.account.pnJid }, [chatStateChild(state)]));
  }
}
