/**
 * `usync`: user lookups. Baileys 7 is LID-first, so the `lid` protocol (phone number → LID) matters as
 * much as `devices` (who to encrypt for): without it incoming messages cannot be decrypted and outgoing
 * ones have nobody to fetch keys for.
 */
import type { ClientConnection } from './connection.ts';
import { PN_SERVER, type Account } from './model.ts';
import { allChildren, child, children, node, text, type BinaryNode } from './nodes.ts';
import type { SandboxContext } from './context.ts';

export function handleUsyncIq(server: SandboxContext, _conn: ClientConnection, iq: BinaryNode): BinaryNode[] {
  const usync = child(iq, 'usync');
  const protocols = allChildren(child(usync, 'query')).map((p) => p.tag);
  const users = children(child(usync, 'list'), 'user').map((user) => {
    const phone = text(child(user, 'contact'));
    const jid = user.attrs.jid ?? `${(phone ?? '').replace(/[^0-9]/g, '')}@${PN_SERVER}`;
    const account = server.findAccount(jid);
    const isPn = jid.endsWith(`@${PN_SERVER}`);
    return node(
      'user',
      { jid },
      protocols.flatMap((protocol) => protocolResult(protocol, account, isPn, phone)),
    );
  });
  return [
    node('usync', { ...usync?.attrs, last: 'true', index: '0' }, [
      node(
        'result',
        {},
        protocols.map((p) => node(p, {})),
      ),
      node('list', {}, users),
    ]),
  ];
}

function protocolResult(
  protocol: string,
  account: Account | undefined,
  isPn: boolean,
  phone: string | undefined,
): BinaryNode[] {
  switch (protocol) {
    case 'devices':
      return [
        node('devices', {}, [
          node(
            'device-list',
            {},
            account
              ? [
                  node('device', { id: 0 }),
                  ...account
                    .activeCompanions()
                    .map((c) => node('device', { id: c.deviceId, 'key-index': c.keyIndex })),
                ]
              : [],
          ),
          node('key-index-list', { ts: account?.createdAt ?? 0 }),
        ]),
      ];
    case 'lid':
      return account && isPn ? [node('lid', { val: account.lidJid })] : [];
    case 'contact':
      return [
        node(
          'contact',
          { type: account ? 'in' : 'out' },
          phone !== undefined ? Buffer.from(phone) : undefined,
        ),
      ];
    case 'status':
      return account
        ? [node('status', { t: account.createdAt }, Buffer.from('Hey there! I am using WhatsApp.'))]
        : [];
    case 'disappearing_mode':
      return account ? [node('disappearing_mode', { duration: 0, t: 0 })] : [];
    default:
      return [];
  }
}
