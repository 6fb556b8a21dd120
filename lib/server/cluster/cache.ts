// A node's cache of directory lookups (pure): bounded, oldest first out, each value
// fresh until a time; stale values are kept to answer while Redis is away.

/**
 * A cached value (undefined: cached absence) and until when it is fresh (ms, the caller's clock).
 *
 * @example
 * ```ts
 * import type { CacheSlot } from "./cache.ts";
 * const slot: CacheSlot<string> = { value: undefined, freshUntil: 0 };
 * console.log(slot.freshUntil > performance.now() ? "fresh" : "stale"); // stale
 * ```
 */
export interface CacheSlot<V> {
  /** The value, or undefined for "not there". */
  readonly value: V | undefined;
  /** Fresh while the caller's clock is below this; stale after (kept for outages). */
  readonly freshUntil: number;
}

/**
 * At most `maxEntries` values by key; setting a key makes it the newest, and
 * the oldest goes first when full.
 *
 * @example
 * ```ts
 * import { LookupCache } from "./cache.ts";
 * const cache = new LookupCache<string>(2);
 * cache.set("a", "1", 1_000);
 * cache.set("b", undefined, 1_000); // b is known to be absent
 * cache.set("c", "3", 1_000); // a goes
 * console.log(cache.get("a"), cache.get("b")?.value, cache.size); // undefined undefined 2
 * ```
 */
export class LookupCache<V> {
  #slots = new Map<string, CacheSlot<V>>();
  #maxEntries: number;

  /** A cache of at most `maxEntries` values (at least 1). */
  constructor(maxEntries: number) {
    this.#maxEntries = Math.max(1, maxEntries);
  }

  /** Values cached, fresh or stale. */
  get size(): number {
    return this.#slots.size;
  }

  /** The slot of `key`, fresh or stale. */
  get(key: string): CacheSlot<V> | undefined {
    return this.#slots.get(key);
  }

  /** Caches `value` (undefined: absent) for `key`, fresh until `freshUntil`. */
  set(key: string, value: V | undefined, freshUntil: number): void {
    this.#slots.delete(key);
    this.#slots.set(key, { value, freshUntil });
    for (const oldest of this.#slots.keys()) {
      if (this.#slots.size <= this.#maxEntries) break;
      this.#slots.delete(oldest);
    }
  }

  /** Forgets `key`. */
  delete(key: string): void {
    this.#slots.delete(key);
  }

  /** Makes every value stale (kept, to answer while Redis cannot be asked). */
  staleAll(): void {
    for (const [key, slot] of this.#slots) this.#slots.set(key, { ...slot, freshUntil: 0 });
  }
}
