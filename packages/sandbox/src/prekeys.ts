/**
 * The `encrypt` namespace: the server as keeper of Signal prekey bundles. Companions upload theirs;
 * anyone starting a session fetches one, which consumes a one-time prekey, and the owner is told to
 * top up when fewer than five are left.
 */
import type { ClientConnection } from './connection.ts';
import { stanzaId } from './ids.ts';
import { SERVER_JID, type Companion, type Device } from './model.ts';
import {
  child,
  childBytes,
  children,
  node,
  readUint,
  uintBytes,
  unixSeconds,
  type BinaryNode,
} from './nodes.ts';
import type { PreKeyBundle } from './signal-device.ts';
import { SandboxError } from './errors.ts';
import type { SandboxContext } from './context.ts';

const LOW_PREKEY_COUNT = 5;
const KEY_TYPE = Buffer.from([5]);

export function handleEncryptIq(
  server: SandboxContext,
  conn: ClientConnection,
  iq: BinaryNode,
): BinaryNode[] {
  const companion = conn.companion!;
  const type = iq.attrs.type;
  if (type === 'get' && child(iq, 'count')) {
    let count = companion.preKeys.size;
    if (count === 0 && server.options.smallPreKeyBatches) count = 1;
    return [node('count', { value: count })];
  }
  if (type === 'get' && child(iq, 'digest')) {
    return [node('digest', {}, [])];
  }
  if (type === 'get' && child(iq, 'key')) {
    return [node('list', {}, fetchBundles(server, children(child(iq, 'key'), 'user')))];
  }
  if (type === 'set' && child(iq, 'list')) {
    storeUpload(companion, iq);
    return [];
  }
  if (type === 'set' && child(iq, 'rotate')) {
    const skey = child(child(iq, 'rotate'), 'skey');
    const signed = readSignedPreKey(skey);
    if (!signed) throw new SandboxError(400, 'bad-request');
    companion.signedPreKey = signed;
    return [];
  }
  return [];
}

function storeUpload(companion: Companion, iq: BinaryNode): void {
  const identity = childBytes(iq, 'identity');
  if (identity && !identity.equals(companion.identityKey)) throw new SandboxError(409, 'identity-mismatch');
  const registrationId = readUint(childBytes(iq, 'registration'));
  if (registrationId !== undefined) companion.registrationId = registrationId;
  const signed = readSignedPreKey(child(iq, 'skey'));
  if (signed) companion.signedPreKey = signed;
  for (const key of children(child(iq, 'list'), 'key')) {
    const id = readUint(childBytes(key, 'id'));
    const value = childBytes(key, 'value');
    if (id !== undefined && value?.length === 32) {
      companion.preKeys.set(id, value);
      companion.preKeysUploaded++;
    }
  }
}

function readSignedPreKey(skey: BinaryNode | undefined): Companion['signedPreKey'] | undefined {
  const keyId = readUint(childBytes(skey, 'id'));
  const publicKey = childBytes(skey, 'value');
  const signature = childBytes(skey, 'signature');
  if (keyId === undefined || !publicKey || !signature) return undefined;
  return { keyId, publicKey, signature };
}

function fetchBundles(server: SandboxContext, users: BinaryNode[]): BinaryNode[] {
  const out: BinaryNode[] = [];
  for (const user of users) {
    const jid = user.attrs.jid;
    const device = jid ? server.findDevice(jid) : undefined;
    // Unknown devices are left out: the client then skips them instead of failing the whole send.
    if (!jid || !device) continue;
    out.push(bundleNode(jid, takeBundle(server, device)));
  }
  return out;
}

/** A bundle to start a session with `device`; for a companion this consumes one of its prekeys. */
export function takeBundle(server: SandboxContext, device: Device): PreKeyBundle {
  if (device.kind === 'phone') return device.account.signal.bundle();
  const bundle = device.takeBundle();
  if (device.preKeys.size < LOW_PREKEY_COUNT) {
    server.sendIfOnline(
      device,
      node('notification', { from: SERVER_JID, type: 'encrypt', id: stanzaId(), t: unixSeconds() }, [
        node('count', { value: device.preKeys.size }),
      ]),
    );
  }
  return bundle;
}

function bundleNode(jid: string, bundle: PreKeyBundle): BinaryNode {
  const content: BinaryNode[] = [
    node('registration', {}, uintBytes(bundle.registrationId, 4)),
    node('type', {}, KEY_TYPE),
    node('identity', {}, bundle.identityKey),
    node('skey', {}, [
      node('id', {}, uintBytes(bundle.signedPreKey.keyId, 3)),
      node('value', {}, bundle.signedPreKey.publicKey),
      node('signature', {}, bundle.signedPreKey.signature),
    ]),
  ];
  if (bundle.preKey) {
    content.push(
      node('key', {}, [
        node('id', {}, uintBytes(bundle.preKey.keyId, 3)),
        node('value', {}, bundle.preKey.publicKey),
      ]),
    );
  }
  return node('user', { jid }, content);
}
