/** Small helpers for reading and building Baileys' binary nodes (the XMPP-like stanzas of the protocol). */
import { getBinaryNodeChild, getBinaryNodeChildren, type BinaryNode } from './wa.ts';

export type { BinaryNode };
export type Attrs = Record<string, string | number | boolean | undefined>;

/** Builds a node; attributes that are undefined are left out, numbers and booleans become strings. */
export function node(
  tag: string,
  attrs: Attrs = {},
  content?: BinaryNode[] | Uint8Array | string,
): BinaryNode {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined) clean[key] = String(value);
  }
  return content === undefined ? { tag, attrs: clean } : { tag, attrs: clean, content };
}

export function child(parent: BinaryNode | undefined, tag: string): BinaryNode | undefined {
  return parent ? getBinaryNodeChild(parent, tag) : undefined;
}

export function children(parent: BinaryNode | undefined, tag: string): BinaryNode[] {
  return parent ? getBinaryNodeChildren(parent, tag) : [];
}

export function allChildren(parent: BinaryNode | undefined): BinaryNode[] {
  return parent && Array.isArray(parent.content) ? parent.content : [];
}

export function firstChild(parent: BinaryNode | undefined): BinaryNode | undefined {
  return allChildren(parent)[0];
}

export function bytes(n: BinaryNode | undefined): Buffer | undefined {
  const content = n?.content;
  if (content instanceof Uint8Array) return Buffer.from(content);
  if (typeof content === 'string') return Buffer.from(content, 'utf8');
  return undefined;
}

export function childBytes(parent: BinaryNode | undefined, tag: string): Buffer | undefined {
  return bytes(child(parent, tag));
}

export function text(n: BinaryNode | undefined): string | undefined {
  return bytes(n)?.toString('utf8');
}

/** Big-endian unsigned integer of `length` bytes, as WhatsApp encodes key ids and registration ids. */
export function uintBytes(value: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = length - 1, v = value; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  return out;
}

export function readUint(buf: Uint8Array | undefined): number | undefined {
  if (!buf) return undefined;
  let value = 0;
  for (const b of buf) value = value * 256 + b;
  return value;
}

export function unixSeconds(date = Date.now()): number {
  return Math.floor(date / 1000);
}
