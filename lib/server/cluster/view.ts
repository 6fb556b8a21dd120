// What one node knows of the directory: a bounded cache of entries and absences, kept
// current by the changes the scripts publish, asked of Redis only on a miss.

import type { ClusterTimings } from "./timings.ts";
import { LookupCache } from "./cache.ts";
import { DirectoryError } from "./errors.ts";
import { type ChangeMessage, decodeEntry, type DirectoryEntry } from "./records.ts";

/** An item's entry (undefined: absent) as of a revision. */
interface Known {
  entry: DirectoryEntry | undefined;
  revision: number;
}

/**
 * Asks Redis about an item (`<kind>:<value>`): its entry's JSON and TTL, or
 * `""` and the revision counter when it is absent.
 *
 * @example
 * ```ts
 * import type { Fetch } from "./view.ts";
 * const nothing: Fetch = () => Promise.resolve(["", 41]);
 * console.log(await nothing("name:demo")); // [ "", 41 ]
 * ```
 */
export type Fetch = (item: string) => Promise<[json: string, ttlOrRevision: number]>;

/**
 * The cache of one node. Each answer carries the revision of the change that
 * made it, so a late message or reply never overwrites newer news. While the
 * change channel is down (deaf), nothing is fresh: every lookup asks Redis, and
 * what Redis says is kept only to answer while Redis cannot be asked.
 *
 * @example
 * ```ts
 * import { DEFAULT_CLUSTER_TIMINGS } from "./timings.ts";
 * import { DirectoryView } from "./view.ts";
 * let asked = 0;
 * const view = new DirectoryView(DEFAULT_CLUSTER_TIMINGS, () => {
 *   asked++;
 *   return Promise.resolve(['{"n":"a:8080","s":"s1","h":"","r":3}', 60_000]);
 * });
 * view.listening(true);
 * await view.lookup("name:demo");
 * console.log((await view.lookup("name:demo"))?.node, asked); // a:8080 1
 * ```
 */
export class DirectoryView {
  #timings: ClusterTimings;
  #fetch: Fetch;
  #cache: LookupCache<Known>;
  /** Lookups on their way to Redis, one per item; `stale` when hearing started or stopped meanwhile. */
  #inflight = new Map<string, { answer: Promise<DirectoryEntry | undefined>; stale: boolean }>();
  #deaf = true;

  /** A view that asks `fetch` on a miss; deaf until `listening(true)`. */
  constructor(timings: ClusterTimings, fetch: Fetch) {
    this.#timings = timings;
    this.#fetch = fetch;
    this.#cache = new LookupCache(timings.cacheMaxEntries);
  }

  /** Items cached, fresh or stale. */
  get size(): number {
    return this.#cache.size;
  }

  /**
   * Who holds `item`: cached while fresh, else asked (concurrent misses share
   * one question). When Redis cannot be asked, a stale answer is given; with
   * none, the DirectoryError `unavailable` is thrown.
   */
  lookup(item: string): Promise<DirectoryEntry | undefined> {
    const slot = this.#cache.get(item);
    if (slot && slot.freshUntil > performance.now()) return Promise.resolve(slot.value?.entry);
    const flying = this.#inflight.get(item);
    if (flying) return flying.answer;
    const flight = { answer: Promise.resolve<DirectoryEntry | undefined>(undefined), stale: false };
    flight.answer = this.#ask(item, flight);
    this.#inflight.set(item, flight);
    return flight.answer;
  }

  /** The fresh cached answer: an entry, null (known absent), or undefined (nothing fresh). */
  peek(item: string): DirectoryEntry | null | undefined {
    const slot = this.#cache.get(item);
    if (!slot || slot.freshUntil <= performance.now()) return undefined;
    return slot.value?.entry ?? null;
  }

  /** Caches what is known of `item`, unless newer news is cached; fresh only while listening. */
  remember(item: string, entry: DirectoryEntry | undefined, revision: number, ttlMs: number): void {
    const known = this.#cache.get(item)?.value;
    if (known && known.revision > revision) return;
    const fresh = this.#deaf ? 0 : Math.min(ttlMs, this.#timings.cacheMaxAgeMs);
    this.#cache.set(item, { entry, revision }, performance.now() + fresh);
  }

  /** Applies a published change; returns the entry it set (undefined for a release). */
  heard(change: Exclude<ChangeMessage, { op: "node" }>): DirectoryEntry | undefined {
    // A lookup on its way meanwhile cannot overwrite this: its answer has a lower revision.
    if (change.op === "del") {
      this.remember(change.item, undefined, change.revision, this.#timings.cacheMaxAgeMs);
      return undefined;
    }
    const entry = decodeEntry(change.entry, change.ttlMs, Date.now());
    this.remember(change.item, entry, change.revision, change.ttlMs);
    return entry;
  }

  /**
   * Whether changes are heard. Either way, whatever is cached goes stale: a
   * view that stops hearing cannot vouch for it, one that starts again may
   * have missed changes.
   */
  listening(yes: boolean): void {
    this.#deaf = !yes;
    this.#cache.staleAll();
    for (const flight of this.#inflight.values()) flight.stale = true;
  }

  async #ask(
    item: string,
    flight: { stale: boolean },
  ): Promise<DirectoryEntry | undefined> {
    try {
      const [json, number] = await this.#fetch(item);
      if (json === "") {
        if (!flight.stale) this.remember(item, undefined, number, this.#timings.cacheMaxAgeMs);
        return undefined;
      }
      const entry = decodeEntry(json, number, Date.now());
      if (!entry) throw new TypeError(`Unreadable directory entry for ${item}: ${json}`);
      if (!flight.stale) this.remember(item, entry, entry.revision, number);
      return entry;
    } catch (e) {
      const slot = this.#cache.get(item);
      if (slot && e instanceof DirectoryError && e.code === "unavailable") return slot.value?.entry;
      throw e;
    } finally {
      this.#inflight.delete(item);
    }
  }
}
