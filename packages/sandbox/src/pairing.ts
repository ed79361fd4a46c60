/**
 * Linking a new companion to an account, both ways WhatsApp offers:
 * - QR: the server gives the unregistered client six refs; the client shows them one after another as
 *   QR codes; the simulated phone "scans" one (ref, Noise key, identity key, ADV secret).
 * - Pairing code: the client wraps an ephemeral key with the 8-character code; the simulated phone
 *   "types" the code, both sides agree on the ADV secret through two Diffie-Hellmans.
 * Either way the phone then signs the device identity (ADV), the client countersigns it, and the server
 * asks the client to restart (515) and log in with its new identity.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { streamErrorNode, type ClientConnection } from './connection.ts';
import {
  aesCtr,
  aesGcmDecrypt,
  generateKeyPair,
  hkdf,
  hmacSha256,
  pairingCodeKey,
  sharedKey,
  sign,
  verify,
  type KeyPair,
} from './crypto.ts';
import { qrRef, stanzaId } from './ids.ts';
import { Companion, LID_SERVER, PN_SERVER, SERVER_JID, type Account, type SignedPreKey } from './model.ts';
import { child, childBytes, node, readUint, unixSeconds, type BinaryNode } from './nodes.ts';
import { SandboxError } from './errors.ts';
import type { SandboxContext } from './context.ts';
import { jidDecode, proto } from './wa.ts';

const ADV_ACCOUNT_SIG_PREFIX = Buffer.from([6, 0]);
const ADV_DEVICE_SIG_PREFIX = Buffer.from([6, 1]);
const QR_PREFIX = 'https://wa.me/settings/linked_devices#';
const REF_COUNT = 6;
const PAIRING_CODE_TIMEOUT_MS = 15_000;
const CODE_REQUEST_WAIT_MS = 1_000;

interface LinkCodeState {
  readonly pn: string;
  readonly wrappedCompanionEphemeral: Buffer;
  readonly ref: string;
  primary?: {
    readonly account: Account;
    readonly ephemeral: KeyPair;
    readonly companionEphemeral: Buffer;
    readonly done: { resolve: (c: Companion) => void; reject: (e: Error) => void };
  };
}

/** A client that connected without credentials and waits to be linked. */
interface Registration {
  readonly conn: ClientConnection;
  readonly identityKey: Buffer;
  readonly registrationId: number;
  readonly signedPreKey: SignedPreKey;
  readonly platform: string;
  readonly refs: string[];
  linkCode?: LinkCodeState;
  linking: boolean;
}

/** What pairing needs beyond the handlers' common view: the clients waiting to be linked. */
export interface PairingContext extends SandboxContext {
  readonly pairings: Pairings;
}

export class Pairings {
  readonly byConn = new Map<ClientConnection, Registration>();
  readonly byRef = new Map<string, Registration>();

  /** How many unregistered clients are waiting for a scan or a code. */
  get waiting(): number {
    return this.byConn.size;
  }
}

export function beginRegistration(
  server: PairingContext,
  conn: ClientConnection,
  payload: proto.ClientPayload,
): void {
  const data = payload.devicePairingData!;
  if (!data.eIdent || !data.eSkeyVal || !data.eSkeySig || !data.eRegid || !data.eSkeyId) {
    conn.streamError(node('failure', { reason: 401 }));
    return;
  }
  let platform = 'UNKNOWN';
  if (data.deviceProps) {
    const props = proto.DeviceProps.decode(data.deviceProps);
    const type = proto.DeviceProps.PlatformType[props.platformType ?? 0] ?? 'UNKNOWN';
    platform = props.os ? `${type} (${props.os})` : type;
  }
  const registration: Registration = {
    conn,
    identityKey: Buffer.from(data.eIdent),
    registrationId: readUint(data.eRegid)!,
    signedPreKey: {
      keyId: readUint(data.eSkeyId)!,
      publicKey: Buffer.from(data.eSkeyVal),
      signature: Buffer.from(data.eSkeySig),
    },
    platform,
    refs: Array.from({ length: REF_COUNT }, qrRef),
    linking: false,
  };
  server.pairings.byConn.set(conn, registration);
  for (const ref of registration.refs) server.pairings.byRef.set(ref, registration);
  // There is no `<success>` for an unregistered client: the refs are what it waits for.
  conn
    .query(
      server.serverIq('set', 'md', [
        node(
          'pair-device',
          {},
          registration.refs.map((ref) => node('ref', {}, Buffer.from(ref))),
        ),
      ]),
    )
    .catch(() => undefined);
}

export function dropRegistration(server: PairingContext, conn: ClientConnection): void {
  const registration = server.pairings.byConn.get(conn);
  if (!registration) return;
  server.pairings.byConn.delete(conn);
  for (const ref of registration.refs) server.pairings.byRef.delete(ref);
  registration.linkCode?.primary?.done.reject(
    new SandboxError(410, 'the client disconnected before pairing'),
  );
}

/** The phone scans a QR code the client displayed. */
export async function scanQr(server: PairingContext, account: Account, qr: string): Promise<Companion> {
  // Accept the bare string, or an image data URL with the string after a '|' (as gateways show QRs).
  const value = qr.includes('|') ? qr.slice(qr.lastIndexOf('|') + 1) : qr;
  const payload = value.startsWith(QR_PREFIX) ? value.slice(QR_PREFIX.length) : value;
  const [ref, noiseKeyB64, identityKeyB64, advSecretB64] = payload.split(',');
  if (!ref || !noiseKeyB64 || !identityKeyB64 || !advSecretB64)
    throw new SandboxError(400, 'not a WhatsApp pairing QR');
  const registration = server.pairings.byRef.get(ref);
  if (!registration || !registration.conn.isOpen) throw new SandboxError(404, 'QR code expired or unknown');
  if (!registration.conn.clientStaticKey?.equals(Buffer.from(noiseKeyB64, 'base64'))) {
    throw new SandboxError(400, "the QR's Noise key is not the connection's");
  }
  if (!registration.identityKey.equals(Buffer.from(identityKeyB64, 'base64'))) {
    throw new SandboxError(400, "the QR's identity key is not the registered one");
  }
  return linkDevice(server, registration, account, Buffer.from(advSecretB64, 'base64'));
}

/** `md` iqs: pairing-code stages and the client unlinking itself. */
export async function handleMdIq(
  server: PairingContext,
  conn: ClientConnection,
  iq: BinaryNode,
): Promise<BinaryNode[] | undefined> {
  const linkCode = child(iq, 'link_code_companion_reg');
  if (linkCode?.attrs.stage === 'companion_hello') return companionHello(server, conn, linkCode);
  if (linkCode?.attrs.stage === 'companion_finish') {
    companionFinish(server, conn, linkCode);
    return [];
  }
  const remove = child(iq, 'remove-companion-device');
  if (remove) {
    const companion = conn.companion ?? server.findCompanion(remove.attrs.jid ?? '');
    if (companion) server.removeCompanion(companion, remove.attrs.reason ?? 'user_initiated');
    return [];
  }
  return [];
}

function companionHello(server: PairingContext, conn: ClientConnection, stage: BinaryNode): BinaryNode[] {
  const registration = server.pairings.byConn.get(conn);
  const wrapped = childBytes(stage, 'link_code_pairing_wrapped_companion_ephemeral_pub');
  const pn = jidDecode(stage.attrs.jid ?? '')?.user;
  if (!registration || !wrapped || wrapped.length < 80 || !pn) {
    throw new SandboxError(400, 'bad companion_hello');
  }
  const ref = randomBytes(16).toString('base64url');
  registration.linkCode = { pn, wrappedCompanionEphemeral: wrapped, ref };
  return [node('link_code_companion_reg', {}, [node('link_code_pairing_ref', {}, Buffer.from(ref))])];
}

/** The phone's user types the code the client showed. Resolves with the linked device. */
export async function enterPairingCode(
  server: PairingContext,
  account: Account,
  code: string,
): Promise<Companion> {
  const registration = await waitingForCode(server, account);
  if (!registration?.linkCode)
    throw new SandboxError(404, `no client is waiting for a pairing code for ${account.pn}`);
  const state = registration.linkCode;
  const normalized = code.replace(/[\s-]/g, '').toUpperCase();
  const wrapped = state.wrappedCompanionEphemeral;
  const companionEphemeral = aesCtr(
    wrapped.subarray(48, 80),
    await pairingCodeKey(normalized, wrapped.subarray(0, 32)),
    wrapped.subarray(32, 48),
  );
  const ephemeral = generateKeyPair();
  const salt = randomBytes(32);
  const iv = randomBytes(16);
  const wrappedPrimary = Buffer.concat([
    salt,
    iv,
    aesCtr(ephemeral.public, await pairingCodeKey(normalized, salt), iv),
  ]);
  const done = new Promise<Companion>((resolve, reject) => {
    state.primary = { account, ephemeral, companionEphemeral, done: { resolve, reject } };
  });
  const timer = setTimeout(
    () =>
      state.primary?.done.reject(
        new SandboxError(408, 'the client did not finish the pairing-code exchange'),
      ),
    PAIRING_CODE_TIMEOUT_MS,
  );
  registration.conn.send(
    node(
      'notification',
      { from: SERVER_JID, type: 'link_code_companion_reg', id: stanzaId(), t: unixSeconds() },
      [
        node('link_code_companion_reg', { stage: 'primary_hello' }, [
          node('link_code_pairing_ref', {}, Buffer.from(state.ref)),
          node('primary_identity_pub', {}, account.signal.identity.public),
          node('link_code_pairing_wrapped_primary_ephemeral_pub', {}, wrappedPrimary),
        ]),
      ],
    ),
  );
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The client that asked for a code for this number. `requestPairingCode` returns before its stanza
 * reaches the server, so a caller that types the code at once may be a little early: wait briefly.
 */
async function waitingForCode(server: PairingContext, account: Account): Promise<Registration | undefined> {
  const deadline = Date.now() + CODE_REQUEST_WAIT_MS;
  for (;;) {
    const registration = [...server.pairings.byConn.values()]
      .reverse()
      .find((r) => r.linkCode?.pn === account.pn && !r.linkCode.primary && r.conn.isOpen);
    if (registration || Date.now() > deadline) return registration;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function companionFinish(server: PairingContext, conn: ClientConnection, stage: BinaryNode): void {
  const registration = server.pairings.byConn.get(conn);
  const primary = registration?.linkCode?.primary;
  const bundle = childBytes(stage, 'link_code_pairing_wrapped_key_bundle');
  if (!registration || !primary || !bundle) return;
  const shared = sharedKey(primary.ephemeral.private, primary.companionEphemeral);
  let plaintext: Buffer;
  try {
    const key = hkdf(shared, 32, bundle.subarray(0, 32), 'link_code_pairing_key_bundle_encryption_key');
    plaintext = aesGcmDecrypt(bundle.subarray(44), key, bundle.subarray(32, 44), Buffer.alloc(0));
  } catch {
    // Wrong code: the phone cannot open the bundle, so it never confirms. The client stays unlinked.
    registration.linkCode = { ...registration.linkCode!, primary: undefined };
    primary.done.reject(new SandboxError(401, 'wrong pairing code'));
    return;
  }
  const companionIdentity = plaintext.subarray(0, 32);
  const random = plaintext.subarray(64, 96);
  if (!companionIdentity.equals(registration.identityKey)) {
    primary.done.reject(new SandboxError(400, 'pairing bundle names another identity'));
    return;
  }
  const advSecret = hkdf(
    Buffer.concat([shared, sharedKey(primary.account.signal.identity.private, companionIdentity), random]),
    32,
    Buffer.alloc(0),
    'adv_secret',
  );
  // Answer the iq first: the client waits for it before it can take the pair-success.
  setImmediate(() => {
    linkDevice(server, registration, primary.account, advSecret).then(
      primary.done.resolve,
      primary.done.reject,
    );
  });
}

/** ADV: the phone vouches for the new device's identity; the client countersigns; then 515. */
async function linkDevice(
  server: PairingContext,
  registration: Registration,
  account: Account,
  advSecret: Buffer,
): Promise<Companion> {
  if (registration.linking) throw new SandboxError(409, 'this client is already being linked');
  if (account.banned) throw new SandboxError(403, 'the account is banned');
  registration.linking = true;
  const accountKey = account.signal.identity;
  const deviceId = account.nextDeviceId++;
  const keyIndex = account.nextKeyIndex++;
  const details = Buffer.from(
    proto.ADVDeviceIdentity.encode({
      rawId: randomInt(1, 2 ** 31),
      timestamp: unixSeconds(),
      keyIndex,
    }).finish(),
  );
  const accountSignature = sign(
    accountKey.private,
    Buffer.concat([ADV_ACCOUNT_SIG_PREFIX, details, registration.identityKey]),
  );
  const signed = Buffer.from(
    proto.ADVSignedDeviceIdentity.encode({
      details,
      accountSignatureKey: accountKey.public,
      accountSignature,
    }).finish(),
  );
  const container = proto.ADVSignedDeviceIdentityHMAC.encode({
    details: signed,
    hmac: hmacSha256(signed, advSecret),
  }).finish();
  const reply = await registration.conn.query(
    server.serverIq('set', 'md', [
      node('pair-success', {}, [
        node('device-identity', {}, container),
        node('platform', { name: 'android' }),
        node('device', {
          jid: `${account.pn}:${deviceId}@${PN_SERVER}`,
          lid: `${account.lid}:${deviceId}@${LID_SERVER}`,
        }),
      ]),
    ]),
  );
  const countersigned = childBytes(child(reply, 'pair-device-sign'), 'device-identity');
  const identity = countersigned ? proto.ADVSignedDeviceIdentity.decode(countersigned) : undefined;
  const deviceMsg = Buffer.concat([
    ADV_DEVICE_SIG_PREFIX,
    details,
    registration.identityKey,
    accountKey.public,
  ]);
  if (!identity?.deviceSignature || !verify(registration.identityKey, deviceMsg, identity.deviceSignature)) {
    registration.linking = false;
    registration.conn.streamError(node('failure', { reason: 401 }));
    throw new SandboxError(400, 'the client did not countersign the device identity');
  }
  const companion = new Companion(
    account,
    deviceId,
    keyIndex,
    registration.conn.clientStaticKey!,
    registration.identityKey,
    registration.registrationId,
    registration.signedPreKey,
    registration.platform,
  );
  account.companions.set(deviceId, companion);
  registration.linkCode = undefined; // linked: nothing left to cancel
  dropRegistration(server, registration.conn);
  server.deliverToAccount(
    account,
    () =>
      node('notification', { from: account.pnJid, type: 'devices', id: stanzaId(), t: unixSeconds() }, [
        node('add', {}, [node('device', { jid: companion.pnJid, 'key-index': keyIndex })]),
      ]),
    companion,
  );
  server.logger.info('device linked', { device: companion.pnJid });
  registration.conn.streamError(streamErrorNode(515));
  return companion;
}
