/**
 * Groups: metadata (LID-addressed, with phone numbers alongside, as WhatsApp serves them now), the
 * `w:gp2` notifications every member's devices get when the group changes, and the `w:g2` queries a
 * companion can make (metadata, participating groups, and the usual admin actions).
 * Group messages (sender keys) are not modelled.
 */
import { randomBytes } from 'node:crypto';
import type { ClientConnection } from './connection.ts';
import { groupUser, stanzaId } from './ids.ts';
import { GROUP_SERVER, type Account } from './model.ts';
import {
  allChildren,
  child,
  children,
  firstChild,
  node,
  text,
  unixSeconds,
  type BinaryNode,
} from './nodes.ts';
import { SandboxError } from './errors.ts';
import type { SandboxContext } from './context.ts';
import type { GroupInfo } from './types.ts';
import { jidDecode } from './wa.ts';

export type ParticipantAction = 'add' | 'remove' | 'promote' | 'demote';
type Role = 'admin' | 'superadmin' | null;

export interface GroupChanges {
  readonly subject?: string;
  readonly description?: string;
  readonly announce?: boolean;
  readonly restrict?: boolean;
}

export class Group {
  readonly participants = new Map<Account, Role>();
  subjectOwner: Account;
  subjectTime: number;
  description: { text: string; id: string; owner: Account; t: number } | undefined;
  announce = false;
  restrict = false;
  inviteCode = randomBytes(16).toString('base64url').slice(0, 22);

  constructor(
    readonly user: string,
    public subject: string,
    readonly creator: Account,
    readonly creation: number,
  ) {
    this.subjectOwner = creator;
    this.subjectTime = creation;
  }

  get jid(): string {
    return `${this.user}@${GROUP_SERVER}`;
  }
}

/** What group queries need beyond the handlers' common view: the groups. */
export interface GroupContext extends SandboxContext {
  readonly groups: GroupRegistry;
}

export class GroupRegistry {
  private readonly groups = new Map<string, Group>();

  constructor(private readonly server: SandboxContext) {}

  create(owner: Account, subject: string, members: Account[]): Group {
    let user = groupUser();
    while (this.groups.has(user)) user = groupUser();
    const group = new Group(user, subject, owner, unixSeconds());
    group.participants.set(owner, 'superadmin');
    for (const member of members) if (member !== owner) group.participants.set(member, null);
    this.groups.set(user, group);
    this.notify(group, owner, node('create', { reason: 'invite' }, [metadataNode(group)]));
    return group;
  }

  find(jid: string): Group | undefined {
    return this.groups.get(jidDecode(jid)?.user ?? jid);
  }

  get(jid: string): Group {
    const group = this.find(jid);
    if (!group) throw new SandboxError(404, `no group ${jid}`);
    return group;
  }

  all(): Group[] {
    return [...this.groups.values()];
  }

  participating(account: Account): Group[] {
    return this.all().filter((g) => g.participants.has(account));
  }

  /** Returns the accounts the action applied to. */
  updateParticipants(
    group: Group,
    actor: Account,
    action: ParticipantAction,
    accounts: Account[],
  ): Account[] {
    const affected: Account[] = [];
    for (const account of accounts) {
      const present = group.participants.has(account);
      if (action === 'add' && !present) group.participants.set(account, null);
      else if (action === 'remove' && present) group.participants.delete(account);
      else if (action === 'promote' && present) group.participants.set(account, 'admin');
      else if (action === 'demote' && present) group.participants.set(account, null);
      else continue;
      affected.push(account);
    }
    if (affected.length) {
      const participantNodes = affected.map((a) =>
        node('participant', { jid: a.lidJid, phone_number: a.pnJid }),
      );
      // Removed members learn it too: notify them along with the remaining ones.
      this.notify(group, actor, node(action, {}, participantNodes), action === 'remove' ? affected : []);
    }
    return affected;
  }

  update(group: Group, actor: Account, changes: GroupChanges): void {
    if (changes.subject !== undefined) {
      group.subject = changes.subject;
      group.subjectOwner = actor;
      group.subjectTime = unixSeconds();
      this.notify(
        group,
        actor,
        node('subject', { subject: changes.subject, s_o: actor.lidJid, s_t: group.subjectTime }),
      );
    }
    if (changes.description !== undefined) {
      const id = randomBytes(8).toString('hex').toUpperCase();
      group.description = changes.description
        ? { text: changes.description, id, owner: actor, t: unixSeconds() }
        : undefined;
      this.notify(
        group,
        actor,
        changes.description
          ? node('description', { id }, [node('body', {}, Buffer.from(changes.description))])
          : node('description', { id, delete: 'true' }),
      );
    }
    if (changes.announce !== undefined) {
      group.announce = changes.announce;
      this.notify(group, actor, node(changes.announce ? 'announcement' : 'not_announcement'));
    }
    if (changes.restrict !== undefined) {
      group.restrict = changes.restrict;
      this.notify(group, actor, node(changes.restrict ? 'locked' : 'unlocked'));
    }
  }

  private notify(group: Group, actor: Account, change: BinaryNode, alsoTo: Account[] = []): void {
    const recipients = new Set([...group.participants.keys(), ...alsoTo]);
    const attrs = {
      from: group.jid,
      type: 'w:gp2',
      id: stanzaId(),
      t: unixSeconds(),
      participant: actor.lidJid,
      participant_pn: actor.pnJid,
      addressing_mode: 'lid',
      notify: actor.name,
    };
    for (const account of recipients)
      this.server.deliverToAccount(account, () => node('notification', attrs, [change]));
  }
}

export function metadataNode(group: Group): BinaryNode {
  const content: BinaryNode[] = [...group.participants].map(([account, role]) =>
    node('participant', { jid: account.lidJid, phone_number: account.pnJid, type: role ?? undefined }),
  );
  if (group.description) {
    const d = group.description;
    content.push(
      node('description', { id: d.id, participant: d.owner.lidJid, participant_pn: d.owner.pnJid, t: d.t }, [
        node('body', {}, Buffer.from(d.text)),
      ]),
    );
  }
  if (group.announce) content.push(node('announcement'));
  if (group.restrict) content.push(node('locked'));
  return node(
    'group',
    {
      id: group.user,
      subject: group.subject,
      s_t: group.subjectTime,
      s_o: group.subjectOwner.lidJid,
      s_o_pn: group.subjectOwner.pnJid,
      creation: group.creation,
      creator: group.creator.lidJid,
      creator_pn: group.creator.pnJid,
      addressing_mode: 'lid',
      size: group.participants.size,
    },
    content,
  );
}

export function groupInfo(group: Group): GroupInfo {
  return {
    jid: group.jid,
    subject: group.subject,
    description: group.description?.text,
    owner: group.creator.pnJid,
    creation: group.creation,
    announce: group.announce,
    restrict: group.restrict,
    participants: [...group.participants].map(([a, role]) => ({ jid: a.pnJid, lid: a.lidJid, admin: role })),
  };
}

const PARTICIPANT_ACTIONS = new Set<string>(['add', 'remove', 'promote', 'demote']);

export function handleGroupIq(server: GroupContext, conn: ClientConnection, iq: BinaryNode): BinaryNode[] {
  const actor = conn.companion!.account;
  const registry = server.groups;
  const action = firstChild(iq);
  if (!action) return [];
  const to = iq.attrs.to ?? '';
  if (iq.attrs.type === 'get') {
    if (action.tag === 'participating')
      return [node('groups', {}, registry.participating(actor).map(metadataNode))];
    const group = registry.get(to);
    if (!group.participants.has(actor)) throw new SandboxError(403, 'forbidden');
    if (action.tag === 'invite') return [node('invite', { code: group.inviteCode })];
    return [metadataNode(group)];
  }
  if (action.tag === 'create') {
    const members = children(action, 'participant').map((p) => server.findAccount(p.attrs.jid ?? ''));
    const group = registry.create(
      actor,
      action.attrs.subject ?? '',
      members.filter((m): m is Account => !!m),
    );
    return [metadataNode(group)];
  }
  if (action.tag === 'leave') {
    for (const g of children(action, 'group')) {
      const group = registry.find(g.attrs.id ?? '');
      if (group) registry.updateParticipants(group, actor, 'remove', [actor]);
    }
    return [];
  }
  const group = registry.get(to);
  const role = group.participants.get(actor);
  if (role === undefined) throw new SandboxError(403, 'forbidden');
  if (PARTICIPANT_ACTIONS.has(action.tag)) {
    if (!role) throw new SandboxError(403, 'not-authorized');
    const jids = children(action, 'participant').map((p) => p.attrs.jid ?? '');
    const accounts = jids.map((jid) => server.findAccount(jid));
    registry.updateParticipants(
      group,
      actor,
      action.tag as ParticipantAction,
      accounts.filter((a): a is Account => !!a),
    );
    return [
      node(
        action.tag,
        {},
        jids.map((jid, i) => node('participant', { jid, error: accounts[i] ? undefined : 404 })),
      ),
    ];
  }
  switch (action.tag) {
    case 'subject':
      registry.update(group, actor, { subject: text(action) ?? '' });
      break;
    case 'description':
      registry.update(group, actor, {
        description: action.attrs.delete === 'true' ? '' : (text(child(action, 'body')) ?? ''),
      });
      break;
    case 'announcement':
    case 'not_announcement':
      registry.update(group, actor, { announce: action.tag === 'announcement' });
      break;
    case 'locked':
    case 'unlocked':
      registry.update(group, actor, { restrict: action.tag === 'locked' });
      break;
    case 'invite':
      group.inviteCode = randomBytes(16).toString('base64url').slice(0, 22);
      return [node('invite', { code: group.inviteCode })];
    default:
      server.logger.debug('unmodelled group action', {
        tag: action.tag,
        children: allChildren(action).length,
      });
  }
  return [];
}
