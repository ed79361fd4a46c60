/**
 * App state ("syncd"): the per-account collections of encrypted mutations (contacts, labels, the push
 * name…) that every device of an account syncs. The phone owns the encryption key and shares it with
 * each new companion; the server stores the patches and serves them by version. Patches are built and
 * read with Baileys' own `encodeSyncdPatch` / `decodePatches`, loaded on first use (they pull in
 * Baileys' WebAssembly bridge, which the rest of the sandbox does not need).
 */
import type { ClientConnection } from './connection.ts';
import { stanzaId } from './ids.ts';
import { SERVER_JID, type Account } from './model.ts';
import { child, children, node, unixSeconds, bytes, type BinaryNode } from './nodes.ts';
import type { SandboxContext } from './context.ts';
import { proto } from './wa.ts';
import type { LTHashState } from '@whiskeysockets/baileys/lib/Types/Auth.js';
import type { WAPatchCreate, WAPatchName } from '@whiskeysockets/baileys/lib/Types/Chat.js';
import type * as ChatUtilsModule from '@whiskeysockets/baileys/lib/Utils/chat-utils.js';

export const COLLECTIONS: readonly WAPatchName[] = [
  'critical_block',
  'critical_unblock_low',
  'regular_high',
  'regular_low',
  'regular',
];

type ChatUtils = typeof ChatUtilsModule;
let chatUtils: Promise<ChatUtils> | undefined;
function loadChatUtils(): Promise<ChatUtils> {
  chatUtils ??= import('@whiskeysockets/baileys/lib/Utils/chat-utils.js');
  return chatUtils;
}

interface Collection {
  state: LTHashState;
  readonly patches: { version: number; data: Uint8Array }[];
}

/** A mutation a companion made (e.g. added a label), as decoded by the phone. */
export interface AppStateMutation {
  readonly collection: string;
  readonly index: string[];
  readonly action: Record<string, unknown>;
  readonly at: number;
}

/** What app-state queries need beyond the handlers' common view: the accounts' collections. */
export interface AppStateContext extends SandboxContext {
  readonly appStates: AppStates;
}

export class AppStates {
  private readonly byAccount = new Map<Account, Promise<Map<WAPatchName, Collection>>>();
  readonly mutations = new Map<Account, AppStateMutation[]>();
  /** One chain per account: patches must be numbered and hashed one after another. */
  private readonly chains = new Map<Account, Promise<unknown>>();

  constructor(private readonly server: SandboxContext) {}

  /** Applies `patch` on the phone and tells the account's devices to sync. */
  push(account: Account, patch: WAPatchCreate): Promise<number> {
    return this.serialized(account, async () => {
      const version = await this.append(account, patch);
      for (const companion of account.activeCompanions()) {
        if (!companion.loggedInOnce) continue; // its first sync will fetch everything
        this.server.deliver(
          companion,
          node('notification', { from: SERVER_JID, type: 'server_sync', id: stanzaId(), t: unixSeconds() }, [
            node('collection', { name: patch.type, version }),
          ]),
        );
      }
      return version;
    });
  }

  async handleIq(account: Account, sync: BinaryNode | undefined): Promise<BinaryNode[]> {
    return this.serialized(account, async () => {
      const collections = await this.collections(account);
      const out: BinaryNode[] = [];
      for (const request of children(sync, 'collection')) {
        const name = request.attrs.name as WAPatchName;
        const collection = collections.get(name);
        if (!collection) {
          out.push(
            node('collection', { name, type: 'error' }, [
              node('error', { code: 404, text: 'item-not-found' }),
            ]),
          );
          continue;
        }
        for (const patch of children(request, 'patch')) {
          const data = bytes(patch);
          if (data) await this.applyClientPatch(account, name, collection, data);
        }
        const from = Number(request.attrs.version ?? 0);
        const newer = collection.patches.filter((p) => p.version > from);
        out.push(
          node(
            'collection',
            { name, version: collection.state.version, has_more_patches: 'false' },
            newer.length
              ? [
                  node(
                    'patches',
                    {},
                    newer.map((p) => node('patch', {}, p.data)),
                  ),
                ]
              : undefined,
          ),
        );
      }
      return [node('sync', {}, out)];
    });
  }

  private async collections(account: Account): Promise<Map<WAPatchName, Collection>> {
    let pending = this.byAccount.get(account);
    if (!pending) {
      pending = (async () => {
        const { newLTHashState } = await loadChatUtils();
        return new Map(COLLECTIONS.map((name) => [name, { state: newLTHashState(), patches: [] }]));
      })();
      this.byAccount.set(account, pending);
      const collections = await pending;
      // The phone's own push name is the first thing every new device learns.
      await this.append(account, pushNamePatch(account.name), collections);
      return collections;
    }
    return pending;
  }

  private async append(
    account: Account,
    patch: WAPatchCreate,
    known?: Map<WAPatchName, Collection>,
  ): Promise<number> {
    const collections = known ?? (await this.collections(account));
    const collection = collections.get(patch.type)!;
    const { encodeSyncdPatch } = await loadChatUtils();
    const keyId = account.appStateKey.keyId.toString('base64');
    const { patch: encoded, state } = await encodeSyncdPatch(patch, keyId, collection.state, async () => ({
      keyData: account.appStateKey.keyData,
      fingerprint: { rawId: 1, currentIndex: 0, deviceIndexes: [0] },
      timestamp: account.appStateKey.timestamp,
    }));
    encoded.version = { version: state.version };
    collection.state = state;
    collection.patches.push({ version: state.version, data: proto.SyncdPatch.encode(encoded).finish() });
    return state.version;
  }

  private async applyClientPatch(
    account: Account,
    name: WAPatchName,
    collection: Collection,
    data: Buffer,
  ): Promise<void> {
    const { decodePatches } = await loadChatUtils();
    const patch = proto.SyncdPatch.decode(data);
    const version = collection.state.version + 1;
    patch.version = { version };
    const keyFor = async (id: string) =>
      id === account.appStateKey.keyId.toString('base64')
        ? {
            keyData: account.appStateKey.keyData,
            fingerprint: null,
            timestamp: account.appStateKey.timestamp,
          }
        : undefined;
    // decodePatches empties the patch's mutations when done: give it a copy.
    const { state, mutationMap } = await decodePatches(
      name,
      [{ ...patch, mutations: [...patch.mutations] }],
      collection.state,
      keyFor,
      {},
      undefined,
      undefined,
      false,
    );
    collection.state = { ...state, version };
    collection.patches.push({ version, data: proto.SyncdPatch.encode(patch).finish() });
    const log = this.mutations.get(account) ?? [];
    for (const mutation of Object.values(mutationMap)) {
      log.push({
        collection: name,
        index: mutation.index,
        action: (mutation.syncAction.value
          ? proto.SyncActionValue.fromObject(mutation.syncAction.value).toJSON()
          : {}) as Record<string, unknown>,
        at: Date.now(),
      });
    }
    if (log.length > 200) log.splice(0, log.length - 200);
    this.mutations.set(account, log);
  }

  private serialized<T>(account: Account, fn: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(account) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    this.chains.set(
      account,
      run.catch(() => undefined),
    );
    return run;
  }
}

export function handleAppStateIq(
  server: AppStateContext,
  conn: ClientConnection,
  iq: BinaryNode,
): Promise<BinaryNode[]> {
  return server.appStates.handleIq(conn.companion!.account, child(iq, 'sync'));
}

const SET = proto.SyncdMutation.SyncdOperation.SET;

export function pushNamePatch(name: string): WAPatchCreate {
  return {
    type: 'critical_block',
    index: ['setting_pushName'],
    apiVersion: 1,
    operation: SET,
    syncAction: { timestamp: Date.now(), pushNameSetting: { name } },
  };
}

export function contactPatch(
  jid: string,
  contact: { fullName?: string; firstName?: string; lidJid?: string },
): WAPatchCreate {
  return {
    type: 'critical_unblock_low',
    index: ['contact', jid],
    apiVersion: 2,
    operation: SET,
    syncAction: {
      timestamp: Date.now(),
      contactAction: { fullName: contact.fullName, firstName: contact.firstName, lidJid: contact.lidJid },
    },
  };
}

export function labelEditPatch(label: {
  id: string;
  name: string;
  color?: number;
  deleted?: boolean;
}): WAPatchCreate {
  return {
    type: 'regular',
    index: ['label_edit', label.id],
    apiVersion: 3,
    operation: SET,
    syncAction: {
      timestamp: Date.now(),
      labelEditAction: { name: label.name, color: label.color ?? 0, deleted: label.deleted ?? false },
    },
  };
}

export function labelChatPatch(labelId: string, chatJid: string, labeled: boolean): WAPatchCreate {
  return {
    type: 'regular',
    index: ['label_jid', labelId, chatJid],
    apiVersion: 3,
    operation: SET,
    syncAction: { timestamp: Date.now(), labelAssociationAction: { labeled } },
  };
}
