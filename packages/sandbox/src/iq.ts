/**
 * Client queries (`<iq>`), by namespace. Each handler returns the children of the result; a thrown
 * `SandboxError` becomes an `<error code text>` answer. Namespaces the sandbox does not model get an
 * empty result, which is what Baileys needs to carry on.
 */
import type { ClientConnection } from './connection.ts';
import { node, type BinaryNode } from './nodes.ts';
import { handleEncryptIq } from './prekeys.ts';
import { handleUsyncIq } from './usync.ts';
import { handleMdIq, type PairingContext } from './pairing.ts';
import { handleAppStateIq, type AppStateContext } from './app-state.ts';
import { handleGroupIq, type GroupContext } from './groups.ts';
import { SERVER_JID } from './model.ts';
import { SandboxError } from './errors.ts';

/** Every namespace's handler gets the same view: the handlers' common one, and what pairing, groups and app state add. */
export type IqContext = PairingContext & GroupContext & AppStateContext;

type IqHandler = (
  server: IqContext,
  conn: ClientConnection,
  iq: BinaryNode,
) => Promise<BinaryNode[] | undefined> | BinaryNode[] | undefined;

const PRIVACY_DEFAULTS: Record<string, string> = {
  last: 'all',
  online: 'all',
  profile: 'all',
  status: 'all',
  groupadd: 'all',
  readreceipts: 'all',
  calladd: 'all',
  messages: 'all',
};

const handlers: Record<string, IqHandler> = {
  encrypt: handleEncryptIq,
  usync: handleUsyncIq,
  md: handleMdIq,
  'w:sync:app:state': handleAppStateIq,
  'w:g2': handleGroupIq,
  passive: (server, conn, iq) => {
    if (iq.content && Array.isArray(iq.content) && iq.content[0]?.tag === 'active') {
      // Answer first, then flush the offline queue.
      setImmediate(() => server.activate(conn));
    }
    return [];
  },
  'w:p': () => [],
  abt: () => [node('props', { protocol: 1, hash: 'sandbox' }, [])],
  blocklist: () => [node('list', {}, [])],
  privacy: (_server, _conn, iq) => {
    if (iq.attrs.type !== 'get') return [];
    return [
      node(
        'privacy',
        {},
        Object.entries(PRIVACY_DEFAULTS).map(([name, value]) => node('category', { name, value })),
      ),
    ];
  },
  'w:m': () => [
    node('media_conn', { auth: 'sandbox', ttl: 3600, auth_ttl: 3600, max_buckets: 1 }, [
      node('host', { hostname: '127.0.0.1' }),
    ]),
  ],
  'w:profile:picture': () => {
    throw new SandboxError(404, 'item-not-found');
  },
  status: () => [],
  disappearing_mode: () => [],
};

export async function handleIq(server: IqContext, conn: ClientConnection, iq: BinaryNode): Promise<void> {
  const { id, type, xmlns } = iq.attrs;
  if (type === 'result' || type === 'error') return; // answers to queries nobody waits for
  const reply = (t: 'result' | 'error', content?: BinaryNode[]): void =>
    conn.send(
      node(
        'iq',
        { from: iq.attrs.to ?? SERVER_JID, type: t, id },
        content && content.length ? content : undefined,
      ),
    );
  if (!conn.companion && xmlns !== 'md' && xmlns !== 'w:p') {
    // Before login, only pairing traffic makes sense.
    reply('error', [node('error', { code: 401, text: 'not-authorized' })]);
    return;
  }
  // A device whose pings are dropped hears nothing back, as behind a half-dead route.
  if (xmlns === 'w:p' && conn.companion && server.faults.has(conn.companion, 'dropPings')) return;
  const handler = (xmlns && handlers[xmlns]) || undefined;
  try {
    const content = handler ? await handler(server, conn, iq) : [];
    reply('result', content ?? []);
  } catch (err) {
    if (err instanceof SandboxError) {
      reply('error', [node('error', { code: err.status, text: err.message })]);
    } else {
      server.logger.error('iq failed', { xmlns, err: String(err) });
      reply('error', [node('error', { code: 500, text: 'internal-server-error' })]);
    }
  }
}
