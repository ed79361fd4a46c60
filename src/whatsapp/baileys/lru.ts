/**
 * A least-recently-used cache bounded by an estimated size in bytes (and a count), shared by every
 * instance of one connector: its memory does not grow with the number of instances, only with the
 * budget. A Map keeps insertion order, so re-inserting on access makes the first key the oldest.
 */
export interface LruOptions {
  /** Budget for the sum of the entries' estimated sizes. */
  readonly maxBytes: number;
  /** Upper bound on the number of entries, whatever their size. */
  readonly maxEntries: number;
}

interface Entry<V> {
  readonly value: V;
  readonly bytes: number;
}

export class ByteLru<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private totalBytes = 0;

  constructor(private readonly options: LruOptions) {}

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The value, without marking it as used; undefined when absent. */
  peek(key: string): V | undefined {
    return this.entries.get(key)?.value;
  }

  /** The value, marked as recently used; undefined when absent. */
  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: V, bytes: number): void {
    this.delete(key);
    // An entry larger than the whole budget would evict everything and then itself: do not keep it.
    if (bytes > this.options.maxBytes) return;
    this.entries.set(key, { value, bytes });
    this.totalBytes += bytes;
    while (this.totalBytes > this.options.maxBytes || this.entries.size > this.options.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.totalBytes -= entry.bytes;
  }

  /** Drops every key that starts with `prefix` (an instance's entries). */
  deletePrefix(prefix: string): void {
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.delete(key);
  }
}
