/**
 * The pieces of Baileys and libsignal the sandbox reuses: protobufs, the binary node codec, JID helpers
 * and the Signal primitives. Imported from Baileys' own modules rather than its index so the sandbox
 * does not pay for loading the whole client (its WebAssembly bridge, media, link previews) at start-up.
 */
export { proto } from '@whiskeysockets/baileys/WAProto/index.js';
export {
  encodeBinaryNode,
  decodeBinaryNode,
  getBinaryNodeChild,
  getBinaryNodeChildren,
  getAllBinaryNodeChildren,
  getBinaryNodeChildBuffer,
  getBinaryNodeChildUInt,
  getBinaryNodeChildString,
  jidDecode,
  jidEncode,
  jidNormalizedUser,
  binaryNodeToString,
} from '@whiskeysockets/baileys/lib/WABinary/index.js';
export type { BinaryNode } from '@whiskeysockets/baileys/lib/WABinary/types.js';
export { SessionBuilder, SessionCipher, SessionRecord, ProtocolAddress } from 'libsignal';
export type { SignalStorage } from 'libsignal';
export * as curve from 'libsignal/src/curve.js';
